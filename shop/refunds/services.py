"""Refunds and disputes: asked for in the shop, made at the provider, recorded whoever started
them, applied to orders in any order and any number of times.

Every function here that touches a payment locks its row first (`payment_lock`), then works on
its refunds, disputes and order: the same meeting point and lock order as the payment itself.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from shop.background.engine import tasks_resume
from shop.notifications.services import notifications_queue_for_dispute
from shop.orders.models import Order, OrderStatus
from shop.orders.services import order_flag_for_review, order_refunds_apply
from shop.payments import get_gateway
from shop.payments.models import Payment
from shop.payments.services import payment_lock
from shop.payments.types import (
    PaymentError,
    ProviderDispute,
    ProviderRefund,
    RefundedCharge,
    RefundRefused,
    RefundRequest,
)
from shop.refunds.models import Dispute, Refund, RefundOrigin, RefundReason, RefundStatus
from shop.refunds.requests import refund_record_request, refund_submit_later
from shop.results import Kind, Outcome

logger = logging.getLogger(__name__)

# Provider statuses as the shop records them; a refund never moves back to an earlier rank
# (events come in any order), and failed or canceled is final.
STATUS_OF = {
    "pending": RefundStatus.PENDING,
    "requires_action": RefundStatus.PENDING,
    "succeeded": RefundStatus.SUCCEEDED,
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.CANCELED,
}
RANK = {
    RefundStatus.PENDING: 0,
    RefundStatus.SUCCEEDED: 1,
    RefundStatus.FAILED: 2,
    RefundStatus.CANCELED: 2,
}
CLOSED_DISPUTE_STATUSES = frozenset({"won", "lost", "warning_closed"})
# A refund the provider could not be reached for is tried again, with growing pauses, this long.
RETRY_FIRST = timedelta(minutes=1)
RETRY_MAX = timedelta(hours=1)
RETRY_FOR = timedelta(hours=24)
OWNER_CAUSE = "asked by the owner"


@dataclass(frozen=True)
class RefundResult:
    kind: Kind  # APPLIED: requested; REFUSED: nothing changed
    message: str
    refund: Refund | None = None


def refund_request(
    *,
    order_reference: str,
    amount: int | None = None,
    reason: str = "",
    requested_by: Any = None,
    cause: str = OWNER_CAUSE,
) -> RefundResult:
    """Ask for money back for a paid order: all that remains, or `amount` cents of it.

    The request is recorded as a pending Refund and the provider call enqueued in the same
    transaction; nothing is sent from here. The check that pending and succeeded refunds never
    exceed what was paid runs under the payment's lock, so two owners clicking at once cannot
    refund twice.
    """
    if reason and reason not in RefundReason.values:
        return RefundResult(Kind.REFUSED, f"unknown reason {reason!r}")
    if amount is not None and amount <= 0:
        return RefundResult(Kind.REFUSED, "the amount must be a positive number of cents")
    order = Order.objects.filter(reference=order_reference).first()
    if order is None:
        return RefundResult(Kind.REFUSED, f"no order {order_reference}")
    if not order.payment_intent_id:
        return RefundResult(Kind.REFUSED, f"order {order.reference} is {order.status}, not paid")
    with transaction.atomic():
        payment = payment_lock(order.payment_intent_id)
        order = Order.objects.get(pk=order.pk)  # as it is now that the payment is ours
        if order.status != OrderStatus.PAID:
            return RefundResult(
                Kind.REFUSED, f"order {order.reference} is {order.status}, not paid"
            )
        remaining = order.amount_total - _committed(payment)
        if remaining <= 0:
            return RefundResult(Kind.REFUSED, "nothing remains to refund")
        amount = remaining if amount is None else amount
        if amount > remaining:
            return RefundResult(
                Kind.REFUSED, f"{amount} cents is more than remains refundable ({remaining})"
            )
        refund = refund_record_request(
            order=order,
            payment_intent_id=payment.payment_intent_id,
            amount=amount,
            reason=reason,
            cause=cause,
            requested_by=requested_by,
        )
    logger.info("order %s: refund %d of %d cents requested", order.reference, refund.pk, amount)
    return RefundResult(Kind.APPLIED, f"refund of {amount} cents requested", refund)


def refund_remaining(order: Order) -> int:
    """What could still be refunded: what was paid less pending and succeeded refunds."""
    if order.status != OrderStatus.PAID or not order.payment_intent_id:
        return 0
    payment = Payment.objects.filter(payment_intent_id=order.payment_intent_id).first()
    if payment is None:
        return order.amount_total
    return max(order.amount_total - _committed(payment), 0)


def _committed(payment: Payment) -> int:
    """Cents given back or on their way back: the pending and succeeded refunds recorded, or
    the provider's refunded total if that is more (it may count refunds not itemized yet)."""
    recorded = Refund.objects.filter(
        payment_intent_id=payment.payment_intent_id,
        status__in=[RefundStatus.PENDING, RefundStatus.SUCCEEDED],
    ).aggregate(total=Sum("amount"))["total"]
    return max(recorded or 0, payment.amount_refunded)


def _retry_delay(attempt: int) -> timedelta:
    """The pause after failed attempt number `attempt`: a minute, doubling, at most an hour."""
    return min(RETRY_FIRST * 2 ** min(attempt - 1, 10), RETRY_MAX)


def refunds_resume() -> list[int]:
    """Give a task again to every pending refund the shop asked for that has none waiting or
    running (its task was lost with a crash); their ids. Run by every worker's housekeeping."""
    from shop.refunds.tasks import refund_submit_task

    return tasks_resume(
        refund_submit_task,
        key="refund_id",
        waiting=Refund.objects.filter(
            status=RefundStatus.PENDING, origin=RefundOrigin.SHOP, provider_refund_id__isnull=True
        ),
        enqueue=lambda refund_id: refund_submit_later(Refund.objects.get(pk=refund_id)),
        label="refund",
    )


def refund_submit(*, refund_id: int) -> Outcome:
    """Make a requested refund at the provider (the body of a background task).

    Safe to run any number of times: the idempotency key is the Refund's, and before asking
    again the provider's refunds of the payment are searched for this one (an answer lost
    after the provider kept its idempotency key for a day would otherwise refund twice).
    A provider's refusal is final; anything else raises, so the task is tried again.
    """
    refund = Refund.objects.select_related("order").get(pk=refund_id)
    if refund.status != RefundStatus.PENDING or refund.provider_refund_id:
        return Outcome(Kind.NO_CHANGE, f"refund {refund.pk} is {refund.status} already")
    gateway = get_gateway()
    Refund.objects.filter(pk=refund.pk).update(attempts=refund.attempts + 1)
    try:
        made = None
        if refund.attempts:
            made = next(
                (
                    r
                    for r in gateway.list_refunds(payment_intent_id=refund.payment_intent_id)
                    if r.shop_refund_id == refund.pk
                ),
                None,
            )
        if made is None:
            made = gateway.create_refund(
                RefundRequest(
                    payment_intent_id=refund.payment_intent_id,
                    amount=refund.amount,
                    reason=refund.reason or None,
                    order_reference=refund.order.reference if refund.order else "",
                    shop_refund_id=refund.pk,
                    idempotency_key=f"refund-{refund.pk}",
                )
            )
    except RefundRefused as exc:
        Refund.objects.filter(pk=refund.pk, status=RefundStatus.PENDING).update(
            status=RefundStatus.FAILED,
            failure_reason="refused by the provider",
            last_error=str(exc),
        )
        logger.error("refund %d refused by the provider: %s", refund.pk, exc)
        if refund.order is not None:
            order_flag_for_review(
                order=refund.order, reason=f"refund {refund.pk} was refused by the provider"
            )
        return Outcome(Kind.FLAGGED, "the provider refused the refund", refund.order)
    except PaymentError as exc:
        _submit_failed(refund, exc)
        raise
    Refund.objects.filter(pk=refund.pk).update(last_error="")
    return refund_apply(refund=made, cause="refund made")


def _submit_failed(refund: Refund, exc: Exception) -> None:
    """Keep the error where the owner sees it and plan the next attempt, in one transaction;
    after RETRY_FOR the refund is given up and the order flagged: money must not wait unseen."""
    attempt = refund.attempts + 1
    give_up = timezone.now() - refund.created_at >= RETRY_FOR
    with transaction.atomic():
        if give_up:
            Refund.objects.filter(pk=refund.pk, status=RefundStatus.PENDING).update(
                status=RefundStatus.FAILED,
                failure_reason="the provider could not be reached",
                last_error=str(exc),
            )
            if refund.order is not None:
                order_flag_for_review(
                    order=refund.order,
                    reason=f"refund {refund.pk} could not be made: the provider was unreachable",
                )
        else:
            Refund.objects.filter(pk=refund.pk).update(last_error=str(exc))
            refund_submit_later(refund, run_after=timezone.now() + _retry_delay(attempt))
    logger.warning("refund %d: attempt %d failed (%s)", refund.pk, attempt, exc)


def refund_apply(*, refund: ProviderRefund, cause: str, event_id: str = "") -> Outcome:
    """Record what the provider says about one refund and apply it to its order."""
    if not refund.payment_intent_id:
        return Outcome(Kind.IGNORED, "refund without a payment intent")
    with transaction.atomic(savepoint=False):
        payment = payment_lock(refund.payment_intent_id)
        became_succeeded = _record(refund, payment)
        return _apply_to_order(payment, cause, event_id, became_succeeded)


def refunds_apply_charge(*, charge: RefundedCharge, cause: str, event_id: str = "") -> Outcome:
    """A charge.refunded event: the provider's refunded total, and the refunds it lists."""
    if not charge.payment_intent_id:
        return Outcome(Kind.IGNORED, "charge has no payment intent")
    if charge.amount_refunded is None and not charge.refunds:
        return Outcome(Kind.IGNORED, "charge without a refunded amount or refunds")
    with transaction.atomic(savepoint=False):
        payment = payment_lock(charge.payment_intent_id)
        if charge.amount_refunded is not None and charge.amount_refunded > payment.amount_refunded:
            Payment.objects.filter(pk=payment.pk).update(
                amount_refunded=charge.amount_refunded, refund_event_id=event_id
            )
            payment.amount_refunded, payment.refund_event_id = charge.amount_refunded, event_id
        became_succeeded = any(
            _record(refund, payment)
            for refund in charge.refunds
            if refund.payment_intent_id in (None, charge.payment_intent_id)
        )
        return _apply_to_order(payment, cause, event_id, became_succeeded)


def _apply_to_order(payment: Payment, cause: str, event_id: str, changed: bool) -> Outcome:
    # An order has a payment intent only once money arrived for it (paid, refunded, or paid
    # after its stock sold out).
    order = Order.objects.filter(payment_intent_id=payment.payment_intent_id).first()
    if order is None:
        # Kept on the payment's row and refunds; applied when (if) the order becomes paid.
        return Outcome(Kind.IGNORED, "no paid order for this payment intent (kept for it)")
    Refund.objects.filter(payment_intent_id=payment.payment_intent_id, order__isnull=True).update(
        order=order
    )
    outcome = order_refunds_apply(order=order, payment=payment, cause=cause, event_id=event_id)
    if changed and outcome.kind == Kind.NO_CHANGE:
        return Outcome(Kind.APPLIED, "refund recorded", order)
    return outcome


def _record(refund: ProviderRefund, payment: Payment) -> bool:
    """Create or update the Refund row for a provider refund; True if it became succeeded."""
    status = STATUS_OF.get(refund.status)
    if status is None:
        return False
    row = (
        Refund.objects.select_for_update()
        .filter(
            Q(provider_refund_id=refund.id)
            | Q(
                pk=refund.shop_refund_id or 0,
                provider_refund_id__isnull=True,
                payment_intent_id=payment.payment_intent_id,
            )
        )
        .first()
    )
    if row is None:
        Refund.objects.create(
            payment_intent_id=payment.payment_intent_id,
            provider_refund_id=refund.id,
            amount=refund.amount,
            currency=refund.currency[:3] or "usd",
            reason=refund.reason if refund.reason in RefundReason.values else "",
            status=status,
            origin=RefundOrigin.PROVIDER,
            cause="made at the provider",
            failure_reason=refund.failure_reason or "",
        )
        if not payment.has_refunds:
            Payment.objects.filter(pk=payment.pk).update(has_refunds=True)
            payment.has_refunds = True
        return status == RefundStatus.SUCCEEDED
    moves = RANK[status] > RANK[RefundStatus(row.status)]
    Refund.objects.filter(pk=row.pk).update(
        provider_refund_id=refund.id,
        status=status if moves else row.status,
        failure_reason=(refund.failure_reason or "") if moves else row.failure_reason,
        updated_at=timezone.now(),
    )
    if moves and row.status == RefundStatus.SUCCEEDED and row.order is not None:
        # Money the customer had been told about did not arrive: a person must look.
        order_flag_for_review(
            order=row.order, reason=f"refund {refund.id} failed after it had succeeded"
        )
    return moves and status == RefundStatus.SUCCEEDED


def dispute_apply(*, dispute: ProviderDispute, cause: str, event_id: str = "") -> Outcome:
    """Record a chargeback on its order: the order is marked disputed, and the dispute keeps
    its latest status (a closed dispute stays closed, whatever arrives late)."""
    if not dispute.payment_intent_id:
        return Outcome(Kind.IGNORED, "dispute without a payment intent")
    with transaction.atomic(savepoint=False):
        payment_lock(dispute.payment_intent_id)
        order = Order.objects.filter(
            payment_intent_id=dispute.payment_intent_id, paid_at__isnull=False
        ).first()
        if order is None:
            return Outcome(Kind.IGNORED, "not a payment of ours")
        row = Dispute.objects.select_for_update().filter(provider_dispute_id=dispute.id).first()
        now = timezone.now()
        closed = dispute.status in CLOSED_DISPUTE_STATUSES
        if row is None:
            row = Dispute.objects.create(
                provider_dispute_id=dispute.id,
                order=order,
                payment_intent_id=dispute.payment_intent_id,
                amount=dispute.amount,
                currency=dispute.currency[:3] or order.currency,
                reason=dispute.reason,
                status=dispute.status,
                evidence_due_by=dispute.evidence_due_by,
                closed_at=now if closed else None,
            )
            Order.objects.filter(pk=order.pk).update(disputed=True, updated_at=now)
            notifications_queue_for_dispute(order=order, dispute=row)
            logger.error(
                "order %s disputed: %s, %d cents, evidence due %s",
                order.reference,
                dispute.reason,
                dispute.amount,
                dispute.evidence_due_by,
            )
            return Outcome(Kind.APPLIED, f"disputed ({dispute.status})", order)
        if row.status in CLOSED_DISPUTE_STATUSES or row.status == dispute.status:
            return Outcome(Kind.NO_CHANGE, f"dispute is {row.status}", order)
        Dispute.objects.filter(pk=row.pk).update(
            status=dispute.status,
            reason=dispute.reason or row.reason,
            evidence_due_by=dispute.evidence_due_by or row.evidence_due_by,
            closed_at=now if closed else None,
        )
        return Outcome(Kind.APPLIED, f"dispute {dispute.status}", order)
