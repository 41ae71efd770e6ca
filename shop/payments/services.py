"""Writing what the provider told us about a payment."""

from shop.payments.models import Payment
from shop.payments.statements import payment_upsert_locked


def payment_lock(payment_intent_id: str) -> Payment:
    """The payment's row, created if new, locked until the caller's transaction ends.

    Every path that touches one payment (it being paid, its refunds, its disputes, a refund the
    owner asks for) locks this row first, in this order before any order row: on PostgreSQL the
    second of two concurrent transactions then always sees what the first committed, and no
    two of them can wait on each other.
    """
    # One statement (INSERT ... ON CONFLICT DO UPDATE ... RETURNING): a concurrent insert of the
    # same intent, or a transaction holding its row, makes this one wait for that commit on
    # PostgreSQL, with no savepoint needed.
    return payment_upsert_locked(payment_intent_id)
