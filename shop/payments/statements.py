"""The webhook's three hottest statements, as SQL the ORM cannot write (table and column
names are the models' own, as in the migrations).

Each of them replaces two round trips (a read and a write, or an insert and a locking read) by
one, which is what a webhook costs most here: a statement through the ORM costs about as
much CPU as a whole bare Django request. The SQL is the same on PostgreSQL and SQLite
(>= 3.35, for RETURNING; `shop.checks` says so at start-up), and runs in both test runs.
Values go through each model field's own preparation, so they are stored exactly as the
ORM would store them.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Field, Model
from django.utils import timezone

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
    return DeliveryRow(int(row[0]), row[1], row[2])


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
