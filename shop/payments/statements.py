"""The webhook's hottest statements, as SQL the ORM cannot write (table and column names are
the models' own, as in the migrations).

Each of them replaces two round trips (a read and a write, or an insert and a locking read) by
one, which is what a webhook costs most here: a statement through the ORM costs about as
much CPU as a whole bare Django request. The SQL is the same on PostgreSQL and SQLite
(>= 3.35, for RETURNING; `shop.checks` says so at start-up), and runs in both test runs,
except where a queued delivery writes its task in the same statement: a data-modifying WITH,
which SQLite does not have (there, two statements in a transaction). Values go through each
model field's own preparation, so they are stored exactly as the ORM would store them.
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Field, Model
from django.utils import timezone
from django_tasks.base import Task
from django_tasks_db.models import DBTaskResult

from shop.background.engine import task_new_id, task_row
from shop.payments.models import Payment, WebhookDelivery, WebhookEvent


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    # The outcome already settled when its event had been applied before (a duplicate), else
    # empty: the event is to be processed now.
    kind: str
    outcome: str


# The delivery's values, then the duplicate's kind and outcome prefix, each after the event id.
DELIVERY_INSERT = """
INSERT INTO shop_webhookdelivery (
    received_at, remote_addr, headers, body, body_size, signature_valid, event_id, event_type,
    error, kind, outcome
) VALUES (
    %s, %s, %s, %s, %s, %s, %s, %s,
    '',
    COALESCE((SELECT %s FROM shop_webhookevent
              WHERE event_id = %s AND processed_at IS NOT NULL), ''),
    COALESCE((SELECT SUBSTR(%s || outcome, 1, 200) FROM shop_webhookevent
              WHERE event_id = %s AND processed_at IS NOT NULL), '')
)
RETURNING id, kind, outcome
"""
DELIVERY_FIELDS = (
    "received_at",
    "remote_addr",
    "headers",
    "body",
    "body_size",
    "signature_valid",
    "event_id",
    "event_type",
)


def delivery_insert(
    *, values: dict[str, Any], event_id: str, duplicate_kind: str, duplicate_prefix: str
) -> DeliveryRow:
    """Keep a verified delivery; if its event was applied already, with the outcome of a
    duplicate (`duplicate_kind`, then `duplicate_prefix` and the event's outcome) in the same
    statement: a repeated delivery costs one round trip, a new one no extra read."""
    params = _delivery_params(values, event_id, duplicate_kind, duplicate_prefix)
    return DeliveryRow(*_one(DELIVERY_INSERT, params))


def _delivery_params(
    values: dict[str, Any], event_id: str, duplicate_kind: str, duplicate_prefix: str
) -> list[Any]:
    """DELIVERY_INSERT's parameters: the delivery's values, then the duplicate's kind and
    outcome prefix, each after the event id."""
    params = _prepared(WebhookDelivery, DELIVERY_FIELDS, values)
    return [*params, duplicate_kind, event_id, duplicate_prefix, event_id]


# PostgreSQL: the delivery and, unless it was settled as a duplicate, the task that processes it,
# in one statement (a data-modifying WITH, which SQLite does not have).
DELIVERY_INSERT_QUEUED = """
WITH delivery AS ({delivery}),
task AS (
    INSERT INTO {task_table} ({task_columns})
    SELECT {task_values} FROM delivery WHERE delivery.kind = ''
)
SELECT id, kind, outcome FROM delivery
"""
# SQLite: the task after the delivery, its id known.
TASK_INSERT = "INSERT INTO {task_table} ({task_columns}) VALUES ({task_values})"
# The task's arguments get the delivery's id in SQL (a placeholder in the prepared row).
DELIVERY_ID_INTO_KWARGS = {
    "postgresql": "jsonb_set(%s, '{kwargs,delivery_id}', to_jsonb(delivery.id))",
    "sqlite": "json_set(%s, '$.kwargs.delivery_id', %s)",
}


def delivery_insert_queued(
    *,
    values: dict[str, Any],
    event_id: str,
    duplicate_kind: str,
    duplicate_prefix: str,
    task: Task[Any, Any],
) -> tuple[DeliveryRow, str]:
    """`delivery_insert`, and unless the delivery is settled as a duplicate, a run of `task`
    (database backend) with the keyword argument delivery_id, the delivery's id: together or not
    at all. The delivery's row, and the run's id (unused for a duplicate).

    One statement on PostgreSQL, atomic by itself (no transaction's round trips around it); two
    in a transaction on SQLite.
    """
    params = _delivery_params(values, event_id, duplicate_kind, duplicate_prefix)
    plan = _task_insert_plan(connection.vendor, task)
    task_id, task_params = plan.params(task)
    if connection.vendor == "postgresql":
        return DeliveryRow(*_one(plan.sql, params + task_params)), task_id
    with transaction.atomic():
        row = DeliveryRow(*_one(DELIVERY_INSERT, params))
        if not row.kind:
            # json_set's two parameters: the prepared arguments, then the delivery's id.
            args_at = plan.args_kwargs_at
            task_params[args_at : args_at + 1] = [task_params[args_at], row.id]
            with connection.cursor() as cursor:
                cursor.execute(plan.sql, task_params)
    return row, task_id


@dataclass(frozen=True)
class TaskInsertPlan:
    """A task's INSERT, and its row's values as the ORM would send them; all but two are the
    same for every run (made once per process by the library's own rules, `task_row`)."""

    sql: str
    fields: tuple[Field, ...]  # every column of the library's row, in the SQL's order
    constant: tuple[Any, ...]  # their values, as prepared for a row made once
    id_at: int
    enqueued_at: int
    args_kwargs_at: int

    def params(self, task: Task[Any, Any]) -> tuple[str, list[Any]]:
        """A new run's id, and the values of its row."""
        current = connections[DEFAULT_DB_ALIAS]
        task_id = task_new_id(task)
        values = list(self.constant)
        for at, value in ((self.id_at, task_id), (self.enqueued_at, timezone.now())):
            values[at] = self.fields[at].get_db_prep_save(value, current)
        return str(task_id), values


_plans: dict[tuple[str, str], TaskInsertPlan] = {}


def _task_insert_plan(vendor: str, task: Task[Any, Any]) -> TaskInsertPlan:
    if (vendor, task.module_path) not in _plans:
        _plans[vendor, task.module_path] = _task_insert_plan_made(vendor, task)
    return _plans[vendor, task.module_path]


def _task_insert_plan_made(vendor: str, task: Task[Any, Any]) -> TaskInsertPlan:
    fields = [f for f in DBTaskResult._meta.concrete_fields if isinstance(f, Field)]
    names = [f.name for f in fields]
    table = connection.ops.quote_name(DBTaskResult._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(f.get_attname_column()[1] or "") for f in fields)
    row = task_row(task, {"delivery_id": 0})
    constant = tuple(f.get_db_prep_save(f.pre_save(row, add=True), connection) for f in fields)
    values = [DELIVERY_ID_INTO_KWARGS[vendor] if name == "args_kwargs" else "%s" for name in names]
    if vendor == "postgresql":
        sql = DELIVERY_INSERT_QUEUED.format(
            delivery=DELIVERY_INSERT.strip(),
            task_table=table,
            task_columns=columns,
            task_values=", ".join(values),
        )
    else:
        sql = TASK_INSERT.format(
            task_table=table, task_columns=columns, task_values=", ".join(values)
        )
    return TaskInsertPlan(
        sql,
        tuple(fields),
        constant,
        names.index("id"),
        names.index("enqueued_at"),
        names.index("args_kwargs"),
    )


@dataclass(frozen=True)
class EventRow:
    id: int
    processed: bool
    outcome: str


EVENT_UPSERT_LOCKED = """
INSERT INTO shop_webhookevent (
    event_id, type, payload, received_at, kind, outcome, error, attempts
) VALUES (%s, %s, %s, %s, '', '', '', 0)
ON CONFLICT (event_id) DO UPDATE SET event_id = excluded.event_id
RETURNING id, processed_at, outcome
"""


def event_upsert_locked(*, event_id: str, type: str, payload: dict[str, Any]) -> EventRow:
    """The event's row, created if new, locked until the transaction ends; in one statement.

    ON CONFLICT DO UPDATE locks the existing row (a no-op update), waiting for a concurrent
    delivery's transaction that holds it, and RETURNING then reads the row as that
    transaction left it (PostgreSQL applies DO UPDATE to the newest committed version; SQLite
    runs one writer at a time): deliveries of one event queue here, the first one through
    does the work and the others see it done.
    """
    params = _prepared(
        WebhookEvent,
        ("event_id", "type", "payload", "received_at"),
        {"event_id": event_id, "type": type, "payload": payload, "received_at": timezone.now()},
    )
    row = _one(EVENT_UPSERT_LOCKED, params)
    return EventRow(int(row[0]), row[1] is not None, row[2])


PAYMENT_UPSERT_LOCKED = """
INSERT INTO shop_payment (
    payment_intent_id, created_at, updated_at, amount_refunded, refund_event_id, has_refunds
) VALUES (%s, %s, %s, 0, '', %s)
ON CONFLICT (payment_intent_id) DO UPDATE SET payment_intent_id = excluded.payment_intent_id
RETURNING id, amount_refunded, refund_event_id, has_refunds
"""


def payment_upsert_locked(payment_intent_id: str) -> Payment:
    """The payment's row, created if new, locked until the transaction ends; in one statement
    (see `event_upsert_locked` for how the lock and the returned values behave)."""
    now = timezone.now()
    params = _prepared(
        Payment,
        ("payment_intent_id", "created_at", "updated_at", "has_refunds"),
        {
            "payment_intent_id": payment_intent_id,
            "created_at": now,
            "updated_at": now,
            "has_refunds": False,
        },
    )
    row = _one(PAYMENT_UPSERT_LOCKED, params)
    # The fields the payment's paths read (they write through updates by pk, never save()).
    return Payment(
        id=row[0],
        payment_intent_id=payment_intent_id,
        amount_refunded=row[1],
        refund_event_id=row[2],
        has_refunds=bool(row[3]),
    )


def _one(sql: str, params: list[Any]) -> tuple[Any, ...]:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    assert row is not None  # an INSERT ... RETURNING that inserts or updates returns its row
    return tuple(row)


def _prepared(model: type[Model], names: Sequence[str], values: dict[str, Any]) -> list[Any]:
    """The values of these fields as the ORM would send them (JSON adapted, times formatted)."""
    # This thread's connection, looked up once: each use of the `connection` proxy looks it up.
    current = connections[DEFAULT_DB_ALIAS]
    return [
        field.get_db_prep_save(values[field.name], current)
        for field in _fields(model, tuple(names))
    ]


@functools.cache
def _fields(model: type[Model], names: tuple[str, ...]) -> list[Field]:
    fields = [model._meta.get_field(name) for name in names]
    assert all(isinstance(f, Field) for f in fields)  # columns, not a relation's other side
    return [field for field in fields if isinstance(field, Field)]
