"""Writing what the provider told us about a payment."""

from shop.payments.models import Payment


def payment_lock(payment_intent_id: str) -> Payment:
    """The payment's row, created if new, locked until the caller's transaction ends.

    Every path that touches one payment (it being paid, its refunds, its disputes, a refund the
    owner asks for) locks this row first, in this order before any order row: on PostgreSQL the
    second of two concurrent transactions then always sees what the first committed, and no
    two of them can wait on each other.
    """
    # ON CONFLICT DO NOTHING: a concurrent insert of the same intent makes this one wait for
    # that transaction's commit on PostgreSQL, with no savepoint needed.
    Payment.objects.bulk_create(
        [Payment(payment_intent_id=payment_intent_id)], ignore_conflicts=True
    )
    return Payment.objects.select_for_update().get(payment_intent_id=payment_intent_id)
