"""The webhook's three hottest statements, as SQL the ORM cannot write (table and column
names are the models' own, as in the migrations).

Each of them replaces two round trips (a read and a write, or an insert and a locking read) by
one, which is what a webhook costs most here: a statement through the ORM costs about as
much CPU as a whole bare Django request. The SQL is the same on PostgreSQL and SQLite
(>= 3.35, for RETURNING; `shop.checks` says so at start-up), and runs in both test runs.
Values go through each model field's own preparation, so they are stored exactly as the
ORM would store them.
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Field, Model
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

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
    params = _prepared(WebhookDelivery, DELIVERY_FIELDS, values)
    row = _one(DELIVERY_INSERT, [*params, duplicate_kind, event_id, duplicate_prefix, event_id])
    return DeliveryRow(*row)


# PostgreSQL: the delivery and, unless it was settled as a duplicate, the task that processes it,
# in one statement (a data-modifying WITH, which SQLite does not have); the task's arguments
# get the delivery's new id in SQL.
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


def delivery_insert_queued(
    *,
    values: dict[str, Any],
    event_id: str,
    duplicate_kind: str,
    duplicate_prefix: str,
    task: DBTaskResult,
) -> DeliveryRow:
    """`delivery_insert`, and unless the delivery is settled as a duplicate, the `task` row that
    processes it (its kwargs' delivery_id set to the delivery's id): together or not at all.

    One statement on PostgreSQL, atomic by itself (no transaction's round trips around it); two
    in a transaction on SQLite."""
    params = _prepared(WebhookDelivery, DELIVERY_FIELDS, values)
    params += [duplicate_kind, event_id, duplicate_prefix, event_id]
    plan = _task_insert_plan(connection.vendor)
    if plan.with_delivery:
        row = DeliveryRow(*_one(plan.sql, params + _task_values(task, plan.fields)))
        task.args_kwargs["kwargs"]["delivery_id"] = row.id
        return row
    with transaction.atomic():
        row = DeliveryRow(*_one(DELIVERY_INSERT, params))
        if not row.kind:
            task.args_kwargs["kwargs"]["delivery_id"] = row.id
            with connection.cursor() as cursor:
                cursor.execute(plan.sql, _task_values(task, plan.fields))
    return row


@dataclass(frozen=True)
class TaskInsertPlan:
    sql: str
    fields: list[Field]  # every column of the library's row, in the order of the SQL's values
    with_delivery: bool  # the SQL writes the delivery too (and returns its row)


@functools.cache
def _task_insert_plan(vendor: str) -> TaskInsertPlan:
    """The task's INSERT for this database, built once per process from the model's fields."""
    fields = [f for f in DBTaskResult._meta.concrete_fields if isinstance(f, Field)]
    table = connection.ops.quote_name(DBTaskResult._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(f.get_attname_column()[1] or "") for f in fields)
    if vendor == "postgresql":
        values = [
            "jsonb_set(%s, '{kwargs,delivery_id}', to_jsonb(delivery.id))"
            if field.name == "args_kwargs"
            else "%s"
            for field in fields
        ]
        sql = DELIVERY_INSERT_QUEUED.format(
            delivery=DELIVERY_INSERT.strip(),
            task_table=table,
            task_columns=columns,
            task_values=", ".join(values),
        )
        return TaskInsertPlan(sql, fields, with_delivery=True)
    values_sql = ", ".join(["%s"] * len(fields))
    sql = TASK_INSERT.format(task_table=table, task_columns=columns, task_values=values_sql)
    return TaskInsertPlan(sql, fields, with_delivery=False)


def _task_values(task: DBTaskResult, fields: list[Field]) -> list[Any]:
    """Each column's value as the ORM's INSERT would send it (enqueued_at filled in now)."""
    current = connections[DEFAULT_DB_ALIAS]
    return [f.get_db_prep_save(f.pre_save(task, add=True), current) for f in fields]


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
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    assert row is not None  # an INSERT ... RETURNING that inserts or updates returns its row
    return tuple(row)


def _prepared(model: type[Model], names: Sequence[str], values: dict[str, Any]) -> list[Any]:
    """The values of these fields as the ORM would send them (JSON adapted, times formatted)."""
    prepared = []
    for name in names:
        field = model._meta.get_field(name)
        assert isinstance(field, Field)  # a column of the model, not a relation's other side
        prepared.append(field.get_db_prep_save(values[name], connection))
    return prepared
