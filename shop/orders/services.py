"""The order state machine and the one idempotent fulfilment path.

Every status change goes through `order_transition`, a compare-and-set in one transaction:
whoever calls it first (webhook, success page, reconcile, demo Pay) wins, everyone else sees
no change. The webhook and the success page both call `order_apply_session`.
"""

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from shop.orders.models import Order, OrderStatus, OrderTransition
from shop.payments.models import WebhookEvent
from shop.payments.types import CheckoutSession, RefundedCharge

logger = logging.getLogger(__name__)

# Each status has exactly one status it can be entered from; there are no cycles.
ALLOWED_SOURCE: dict[OrderStatus, OrderStatus] = {
    OrderStatus.PAID: OrderStatus.PENDING,
    OrderStatus.FAILED: OrderStatus.PENDING,
    OrderStatus.EXPIRED: OrderStatus.PENDING,
    OrderStatus.REFUNDED: OrderStatus.PAID,
}


@dataclass(frozen=True)
class Outcome:
    """What applying something to an order did, for logs, webhook records and commands."""

    text: str
    changed: bool = False
    order: Order | None = None


def order_transition(
    *, order: Order, to: OrderStatus, cause: str, event_id: str = "", **fields: Any
) -> bool:
    """Move `order` to `to` if it is still in the one allowed source status. True if it moved."""
    source = ALLOWED_SOURCE[to]
    now = timezone.now()
    if to == OrderStatus.PAID:
        fields.setdefault("paid_at", now)
    # No savepoint of its own: inside a caller's transaction the two writes still stand or fall
    # together with it.
    with transaction.atomic(savepoint=False):
        moved = Order.objects.filter(pk=order.pk, status=source).update(
            status=to, updated_at=now, **fields
        )
        if moved:
            OrderTransition.objects.create(
                order=order,
                from_status=source,
                to_status=to,
                cause=cause,
                event_id=event_id,
                created_at=now,
            )
    if moved:
        order.status = to
        for name, value in fields.items():
            setattr(order, name, value)
        logger.info(
            "order %s %s -> %s (%s%s)",
            order.reference,
            source,
            to,
            cause,
            f", event {event_id}" if event_id else "",
        )
    return bool(moved)


def order_flag_for_review(*, order: Order, reason: str) -> None:
    Order.objects.filter(pk=order.pk).update(
        needs_review=True, review_reason=reason, updated_at=timezone.now()
    )
    order.needs_review, order.review_reason = True, reason
    logger.error("order %s needs review: %s", order.reference, reason)


def order_apply_session(
    *, session: CheckoutSession, cause: str, event_id: str = "", payment_failed: bool = False
) -> Outcome:
    """Bring our order in line with what Stripe says about its Checkout Session.

    Safe to call any number of times, from anywhere, in any order: only Stripe's data (never
    the browser's) decides, and each change is a compare-and-set.
    """
    order = _order_for_session(session)
    if order is None:
        return Outcome("ignored: not one of our checkout sessions")
    if order.checkout_session_id and order.checkout_session_id != session.id:
        if session.payment_status == "paid":
            order_flag_for_review(
                order=order, reason=f"paid through unexpected checkout session {session.id}"
            )
            return Outcome("flagged: paid through an unexpected session", order=order)
        return Outcome("ignored: session is not this order's current session", order=order)

    if session.status == "complete" and session.payment_status in {"paid", "no_payment_required"}:
        return _apply_paid(order, session, cause, event_id)
    if session.status == "complete" and (
        payment_failed or session.payment_intent_status in {"requires_payment_method", "canceled"}
    ):
        moved = order_transition(order=order, to=OrderStatus.FAILED, cause=cause, event_id=event_id)
        return Outcome("failed" if moved else f"no change: order is {order.status}", moved, order)
    if session.status == "expired":
        moved = order_transition(
            order=order, to=OrderStatus.EXPIRED, cause=cause, event_id=event_id
        )
        return Outcome("expired" if moved else f"no change: order is {order.status}", moved, order)
    if session.status == "complete":
        return Outcome("no change: payment is still processing", order=order)
    return Outcome("no change: checkout is still open", order=order)


def _apply_paid(order: Order, session: CheckoutSession, cause: str, event_id: str) -> Outcome:
    if session.amount_total != order.amount_total or session.currency != order.currency:
        order_flag_for_review(
            order=order,
            reason=(
                f"session {session.id} charged {session.amount_total} {session.currency}, "
                f"order is {order.amount_total} {order.currency}"
            ),
        )
        return Outcome("flagged: amount or currency differs from the order", order=order)
    moved = order_transition(
        order=order,
        to=OrderStatus.PAID,
        cause=cause,
        event_id=event_id,
        checkout_session_id=session.id,
        payment_intent_id=session.payment_intent_id or "",
    )
    if moved:
        _apply_refunds_that_came_first(order)
        return Outcome("paid", True, order)
    order.refresh_from_db(fields=["status"])
    if order.status in {OrderStatus.EXPIRED, OrderStatus.FAILED}:
        # Money arrived for an order we had given up on: never drop it silently.
        order_flag_for_review(
            order=order, reason=f"payment received through {session.id} after order {order.status}"
        )
        return Outcome(f"flagged: paid after order was {order.status}", order=order)
    return Outcome(f"no change: order is {order.status}", order=order)


def order_apply_refund(*, charge: RefundedCharge, cause: str, event_id: str = "") -> Outcome:
    if not charge.payment_intent_id:
        return Outcome("ignored: charge has no payment intent")
    if charge.amount_refunded is None:
        return Outcome("ignored: charge without a refunded amount")
    order = Order.objects.filter(payment_intent_id=charge.payment_intent_id).first()
    if order is None:
        return Outcome("ignored: no paid order for this payment intent")
    amount_refunded = charge.amount_refunded
    if amount_refunded < order.amount_total:
        logger.info(
            "order %s partially refunded (%d of %d)",
            order.reference,
            amount_refunded,
            order.amount_total,
        )
        return Outcome("no change: partial refund", order=order)
    moved = order_transition(order=order, to=OrderStatus.REFUNDED, cause=cause, event_id=event_id)
    return Outcome("refunded" if moved else f"no change: order is {order.status}", moved, order)


def _apply_refunds_that_came_first(order: Order) -> None:
    """Stripe does not order events: a refund may have arrived before the payment it undoes."""
    if not order.payment_intent_id:
        return
    early = WebhookEvent.objects.filter(
        payment_intent_id=order.payment_intent_id, type="charge.refunded"
    )
    for record in early:
        order_apply_refund(
            charge=RefundedCharge.from_stripe_dict(record.payload["data"]["object"]),
            cause="charge.refunded (arrived before payment)",
            event_id=record.event_id,
        )


def _order_for_session(session: CheckoutSession) -> Order | None:
    if not session.order_reference:
        return None
    return Order.objects.filter(reference=session.order_reference).first()
