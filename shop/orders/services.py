"""The order state machine and the one idempotent fulfilment path.

Every status change goes through `order_transition`, a compare-and-set in one transaction:
whoever calls it first (webhook, success page, reconcile, demo Pay) wins, everyone else sees
no change. The order's stock follows its status in that same transaction, so it is released
or sold exactly once too. The webhook, the success page, reconcile and the demo Pay all call
`order_apply_session`.
"""

import logging
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef, Sum
from django.utils import timezone

from shop.catalogue.models import StockMovement, StockMovementKind
from shop.catalogue.stock import (
    OutOfStock,
    StockLine,
    stock_release,
    stock_sell,
    stock_shortages,
)
from shop.compiled import CompiledQuery
from shop.notifications.services import (
    notifications_queue_for_refunds,
    notifications_queue_for_review,
    notifications_queue_for_sold_out,
    notifications_queue_for_status,
)
from shop.orders.models import Order, OrderLine, OrderStatus, OrderTransition, email_normalized
from shop.payments.models import Payment
from shop.payments.services import payment_lock
from shop.payments.types import CheckoutSession
from shop.refunds.models import Refund, RefundReason, RefundStatus
from shop.refunds.requests import SOLD_OUT, refund_record_request
from shop.results import Kind, Outcome

logger = logging.getLogger(__name__)

# The statuses each status can be entered from, the usual one first. Paid is also entered from
# expired or failed: a payment that arrives after its checkout ended is taken when its stock
# still can be (see _apply_paid). Nothing leads back to pending, expired or failed, so there are
# no cycles and every order still enters each status at most once.
ALLOWED_SOURCES: dict[OrderStatus, tuple[OrderStatus, ...]] = {
    OrderStatus.PAID: (OrderStatus.PENDING, OrderStatus.EXPIRED, OrderStatus.FAILED),
    OrderStatus.FAILED: (OrderStatus.PENDING,),
    OrderStatus.EXPIRED: (OrderStatus.PENDING,),
    # Refunded is also entered from expired or failed: a payment that came after its checkout
    # ended, when its stock was sold meanwhile, is given back at once (_payment_without_stock).
    OrderStatus.REFUNDED: (OrderStatus.PAID, OrderStatus.EXPIRED, OrderStatus.FAILED),
}
LATE_PAYMENT_SOURCES = (OrderStatus.EXPIRED, OrderStatus.FAILED)
# Stripe completes no session after its expires_at; past that and this margin (for a payment
# completed at the last second whose webhook is still on its way) the shop's own clock gives
# the stock of a pending order back. A payment that still comes is a late payment.
CHECKOUT_END_MARGIN = timedelta(minutes=10)


def order_transition(
    *,
    order: Order,
    to: OrderStatus,
    cause: str,
    event_id: str = "",
    source: OrderStatus | None = None,
    **fields: Any,
) -> bool:
    """Move `order` from `source` (by default the usual one) to `to` if it is still there, and
    its stock with it: leaving pending releases its hold, becoming paid sells its units. True
    if it moved.

    Raises OutOfStock, with nothing changed, for a payment whose units are no longer available.
    """
    source = source or ALLOWED_SOURCES[to][0]
    if source not in ALLOWED_SOURCES[to]:
        raise ValueError(f"an order never goes from {source} to {to}")
    now = timezone.now()
    if to == OrderStatus.PAID:
        fields.setdefault("paid_at", now)
    sale = _sale_lines(order, source) if to == OrderStatus.PAID else []
    # No savepoint of its own unless units must be taken, which can fail: inside a caller's
    # transaction the writes still stand or fall together with it, and so do the emails the
    # change owes (a rolled-back change sends none).
    with transaction.atomic(savepoint=any(not line.held for line in sale)):
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
            if to == OrderStatus.PAID:
                if sale:
                    stock_sell(order_id=order.pk, lines=sale, cause=cause, event_id=event_id)
            elif source == OrderStatus.PENDING and order.holds_stock:
                stock_release(order_id=order.pk, cause=cause, event_id=event_id)
            order.status = to
            for name, value in fields.items():
                setattr(order, name, value)
            notifications_queue_for_status(order=order, status=to)
    if moved:
        logger.info(
            "order %s %s -> %s (%s%s)",
            order.reference,
            source,
            to,
            cause,
            f", event {event_id}" if event_id else "",
        )
    return bool(moved)


def _sale_lines(order: Order, source: OrderStatus) -> list[StockLine]:
    """The order's lines that a payment sells from stock: those its hold covers, and those of
    products with limited stock now (stock set after the checkout, or a hold already released).
    Nothing is read for an order known to have neither."""
    if not order.holds_stock and not getattr(order, "sells_limited_stock", True):
        return []
    holding = source == OrderStatus.PENDING and order.holds_stock
    rows = (
        OrderLine.objects.filter(order=order)
        .annotate(
            held=Exists(
                StockMovement.objects.filter(
                    order=order, product=OuterRef("product"), kind=StockMovementKind.HOLD
                )
            )
        )
        .values_list("product_id", "quantity", "product__stock", "held")
    )
    return [
        StockLine(product_id, quantity, held=holding and held)
        for product_id, quantity, stock, held in rows
        if (holding and held) or stock is not None
    ]


def orders_expire_overdue(
    *, product_ids: Collection[int] | None = None, now: datetime | None = None
) -> list[Order]:
    """Expire the pending orders that hold stock (of these products) although their checkout
    ended more than CHECKOUT_END_MARGIN ago, giving their stock back: the shop's own clock, for
    when Stripe's checkout.session.expired was missed. Each is one compare-and-set, so the event,
    reconcile and this may all arrive at once: the first expires it, the others see no change."""
    now = now or timezone.now()
    overdue = Order.objects.filter(
        status=OrderStatus.PENDING,
        holds_stock=True,
        checkout_expires_at__lt=now - CHECKOUT_END_MARGIN,
    )
    if product_ids is not None:
        overdue = overdue.filter(
            Exists(
                StockMovement.objects.filter(
                    order=OuterRef("pk"), kind=StockMovementKind.HOLD, product_id__in=product_ids
                )
            )
        )
    return [
        order
        for order in overdue.order_by("id")
        if order_transition(order=order, to=OrderStatus.EXPIRED, cause="checkout_overdue")
    ]


def order_flag_for_review(*, order: Order, reason: str) -> None:
    with transaction.atomic(savepoint=False):
        Order.objects.filter(pk=order.pk).update(
            needs_review=True, review_reason=reason, updated_at=timezone.now()
        )
        order.needs_review, order.review_reason = True, reason
        notifications_queue_for_review(order=order)
    logger.error("order %s needs review: %s", order.reference, reason)


def order_apply_session(
    *, session: CheckoutSession, cause: str, event_id: str = "", payment_failed: bool = False
) -> Outcome:
    """Bring our order in line with what the provider says about its checkout session.

    Safe to call any number of times, from anywhere, in any order: only the provider's data
    (never the browser's) decides, and each change is a compare-and-set.
    """
    order = _order_for_session(session)
    if order is None:
        return Outcome(Kind.IGNORED, "not one of our checkout sessions")
    if order.checkout_session_id and order.checkout_session_id != session.id:
        if session.payment_status == "paid":
            order_flag_for_review(
                order=order, reason=f"paid through unexpected checkout session {session.id}"
            )
            return Outcome(Kind.FLAGGED, "paid through an unexpected session", order)
        return Outcome(Kind.IGNORED, "session is not this order's current session", order)

    if session.status == "complete" and session.payment_status in {"paid", "no_payment_required"}:
        # One transaction with the refund check, whoever calls (see _apply_paid).
        with transaction.atomic(savepoint=False):
            return _apply_paid(order, session, cause, event_id)
    if session.status == "complete" and (
        payment_failed or session.payment_intent_status in {"requires_payment_method", "canceled"}
    ):
        return _moved_or_not(order, OrderStatus.FAILED, cause, event_id)
    if session.status == "expired":
        return _moved_or_not(order, OrderStatus.EXPIRED, cause, event_id)
    if session.status == "complete":
        return Outcome(Kind.NO_CHANGE, "payment is still processing", order)
    return Outcome(Kind.NO_CHANGE, "checkout is still open", order)


def _moved_or_not(order: Order, to: OrderStatus, cause: str, event_id: str) -> Outcome:
    if order_transition(order=order, to=to, cause=cause, event_id=event_id):
        return Outcome(Kind.APPLIED, str(to), order)
    order.refresh_from_db(fields=["status"])
    return Outcome(Kind.NO_CHANGE, f"order is {order.status}", order)


def _apply_paid(order: Order, session: CheckoutSession, cause: str, event_id: str) -> Outcome:
    if session.amount_total != order.amount_total or session.currency != order.currency:
        order_flag_for_review(
            order=order,
            reason=(
                f"session {session.id} charged {session.amount_total} {session.currency}, "
                f"order is {order.amount_total} {order.currency}"
            ),
        )
        return Outcome(Kind.FLAGGED, "amount or currency differs from the order", order)
    # Locked before the order becomes paid: a refund of this payment being applied right now
    # either committed before (and is seen below) or waits, and then finds the paid order.
    payment = payment_lock(session.payment_intent_id) if session.payment_intent_id else None
    try:
        moved = _transition_to_paid(order, session, cause, event_id)
    except OutOfStock as short:
        return _payment_without_stock(order=order, session=session, wanted=short.wanted)
    if moved:
        if payment is not None and (payment.amount_refunded or payment.has_refunds):
            # Stripe does not order events: a refund may have arrived before its payment.
            Refund.objects.filter(
                payment_intent_id=payment.payment_intent_id, order__isnull=True
            ).update(order=order)
            order_refunds_apply(
                order=order,
                payment=payment,
                cause="refund (arrived before payment)",
                event_id=payment.refund_event_id,
            )
        return Outcome(Kind.APPLIED, "paid", order)
    return Outcome(Kind.NO_CHANGE, f"order is {order.status}", order)


def _transition_to_paid(order: Order, session: CheckoutSession, cause: str, event_id: str) -> bool:
    """Pending becomes paid. So does an order whose checkout ended before its payment came (the
    session completed just as it expired, a bank debit that settled days later): its units
    were given back, and are taken again if still available (OutOfStock if not)."""
    paid_fields = {
        "checkout_session_id": session.id,
        "payment_intent_id": session.payment_intent_id or "",
        "email": email_normalized(session.customer_email),
    }
    for _ in range(2):
        if order.status not in (OrderStatus.PENDING, *LATE_PAYMENT_SOURCES):
            return False  # paid already (or refunded): this is the same payment again
        source = order.status if order.status in LATE_PAYMENT_SOURCES else OrderStatus.PENDING
        if order_transition(
            order=order,
            to=OrderStatus.PAID,
            source=OrderStatus(source),
            cause=cause,
            event_id=event_id,
            **paid_fields,
        ):
            if source != OrderStatus.PENDING:
                logger.warning(
                    "order %s paid through %s after it was %s", order.reference, session.id, source
                )
            return True
        order.refresh_from_db(fields=["status"])
        if order.status not in LATE_PAYMENT_SOURCES:
            return False
    return False


def _payment_without_stock(
    *, order: Order, session: CheckoutSession, wanted: dict[int, int]
) -> Outcome:
    """Money for units that are no longer there: the order's hold was released (or its product
    was given a stock after its checkout) and others bought them. Nothing is taken from stock;
    the money goes back at once: the order keeps the payment's facts, a refund of all of it is
    recorded with its task (once per order: a database constraint, and the payment's lock
    held by the caller), and the owner is told. The order becomes refunded when it succeeds.
    """
    shortages = stock_shortages(wanted)
    detail = "; ".join(f"{s.name}: {s.wanted} paid for, {s.available} left" for s in shortages)
    with transaction.atomic(savepoint=False):
        if order.status == OrderStatus.PENDING:
            # Its product got a stock after its checkout began, and that stock is gone: the
            # order cannot be fulfilled, and its money goes back like a late payment's.
            order_transition(order=order, to=OrderStatus.FAILED, cause=SOLD_OUT)
        Order.objects.filter(pk=order.pk).update(
            payment_intent_id=session.payment_intent_id or "",
            email=email_normalized(session.customer_email),
            updated_at=timezone.now(),
        )
        order.payment_intent_id = session.payment_intent_id or ""
        order.email = email_normalized(session.customer_email)
        if Refund.objects.filter(order=order, cause=SOLD_OUT).exists():
            return Outcome(Kind.NO_CHANGE, "sold out: its refund is under way", order)
        if not session.payment_intent_id:
            order_flag_for_review(
                order=order,
                reason=f"sold out: paid through {session.id} with no payment to refund ({detail})",
            )
            return Outcome(Kind.FLAGGED, "paid, but sold out and nothing to refund", order)
        refund_record_request(
            order=order,
            payment_intent_id=session.payment_intent_id,
            amount=order.amount_total,
            reason=RefundReason.REQUESTED_BY_CUSTOMER,
            cause=SOLD_OUT,
        )
        notifications_queue_for_sold_out(order=order)
    logger.error(
        "order %s paid through %s while %s, but sold out (%s): refunding it",
        order.reference,
        session.id,
        order.status,
        detail or "sold out",
    )
    return Outcome(Kind.APPLIED, "paid after its stock sold out: refunding it", order)


def order_refunds_apply(*, order: Order, payment: Payment, cause: str, event_id: str) -> Outcome:
    """Bring the order's refunded amount in line with its payment's refunds: the succeeded
    ones recorded, or the provider's refunded total if that is more. All of it makes the order
    refunded. The caller holds the payment's lock (`payment_lock`).

    Refunds only add up: an older event never lowers what a newer one reported.
    """
    succeeded = Refund.objects.filter(
        payment_intent_id=payment.payment_intent_id, status=RefundStatus.SUCCEEDED
    ).aggregate(total=Sum("amount"))["total"]
    total = min(max(succeeded or 0, payment.amount_refunded), order.amount_total)
    grew = Order.objects.filter(pk=order.pk, amount_refunded__lt=total).update(
        amount_refunded=total, updated_at=timezone.now()
    )
    if grew:
        order.amount_refunded = total
    if total >= order.amount_total:
        if order.status in LATE_PAYMENT_SOURCES:
            # Paid after its checkout ended and given back (sold out): the money did arrive.
            moved = order_transition(
                order=order,
                to=OrderStatus.REFUNDED,
                source=OrderStatus(order.status),
                cause=cause,
                event_id=event_id,
                paid_at=timezone.now(),
            )
            outcome = Outcome(Kind.APPLIED, "refunded", order) if moved else None
        else:
            outcome = _moved_or_not(order, OrderStatus.REFUNDED, cause, event_id)
        notifications_queue_for_refunds(order=order)
        if outcome is None:
            order.refresh_from_db(fields=["status"])
            outcome = Outcome(Kind.NO_CHANGE, f"order is {order.status}", order)
        return outcome
    notifications_queue_for_refunds(order=order)
    if grew:
        logger.info(
            "order %s partially refunded (%d of %d)", order.reference, total, order.amount_total
        )
        return Outcome(Kind.APPLIED, f"partially refunded ({total} of {order.amount_total})", order)
    return Outcome(Kind.NO_CHANGE, f"refunded {total} of {order.amount_total}", order)


def _order_for_session(session: CheckoutSession) -> Order | None:
    if not session.order_reference:
        return None
    found = ORDER_BY_REFERENCE.objects(reference=session.order_reference)
    return found[0] if found else None


# Every payment, expiry and failure reads its order this way (compiled once per process).
ORDER_BY_REFERENCE = CompiledQuery(
    lambda reference: (
        Order.objects.filter(reference=reference)
        .annotate(
            # In the same statement: a payment of an order whose products all have unlimited
            # stock reads and writes nothing more (see _sale_lines).
            sells_limited_stock=Exists(
                OrderLine.objects.filter(order=OuterRef("pk"), product__stock__isnull=False)
            )
        )
        .order_by("pk")[:1]
    ),
    "reference",
)
