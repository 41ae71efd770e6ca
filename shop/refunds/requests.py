"""Recording a refund the shop asks for: the row and the task that makes it at the provider,
written in the caller's transaction. Used by the owner's refunds and the automatic one."""

from datetime import datetime
from typing import Any

from shop.orders.models import Order
from shop.payments.models import Payment
from shop.refunds.models import Refund, RefundOrigin, RefundStatus

# The cause of the automatic refund of a payment that came after its stock was sold.
SOLD_OUT = "sold out"


def refund_record_request(
    *,
    order: Order,
    payment_intent_id: str,
    amount: int,
    reason: str,
    cause: str,
    requested_by: Any = None,
) -> Refund:
    """A pending refund and its task; the caller holds the payment's lock and has checked what
    may be refunded."""
    refund = Refund.objects.create(
        order=order,
        payment_intent_id=payment_intent_id,
        amount=amount,
        currency=order.currency,
        reason=reason,
        status=RefundStatus.PENDING,
        origin=RefundOrigin.SHOP,
        cause=cause,
        requested_by=requested_by,
    )
    Payment.objects.filter(payment_intent_id=payment_intent_id).update(has_refunds=True)
    refund_submit_later(refund)
    return refund


def refund_submit_later(refund: Refund, *, run_after: datetime | None = None) -> None:
    # Written in the caller's transaction (the database backend does not wait for a commit):
    # the task exists exactly when the pending refund does.
    from shop.refunds.tasks import refund_submit_task

    task = refund_submit_task.using(run_after=run_after) if run_after else refund_submit_task
    task.enqueue(refund_id=refund.pk)
