"""Catching up with the provider when webhooks were missed.

Pending orders: ask about each one's session. Paid orders: list the refunds of the last
REFUNDS_LOOKBACK days (one call per hundred refunds, not one per order) and apply each
payment's refunded total. Everything goes through the same idempotent functions as webhooks.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from shop.orders.models import Order, OrderStatus
from shop.orders.services import (
    order_apply_refund,
    order_apply_session,
    order_flag_for_review,
    order_transition,
    orders_expire_overdue,
)
from shop.payments import get_gateway
from shop.payments.types import PaymentError, PaymentGateway, RefundedCharge, SessionMissing
from shop.results import Kind

logger = logging.getLogger(__name__)

REFUNDS_LOOKBACK = timedelta(days=90)


@dataclass
class ReconcileReport:
    checked: int = 0
    refunds_seen: int = 0
    changes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def payments_reconcile() -> ReconcileReport:
    """Bring pending and recently refunded orders in line with the provider. Changes that could
    be made are kept even when some checks fail; the failures are listed in the report."""
    report = ReconcileReport()
    gateway = get_gateway()
    _reconcile_pending(report, gateway)
    _reconcile_refunds(report, gateway)
    logger.info(
        "reconcile: %d pending checked, %d refunds seen, %d changed, %d errors",
        report.checked,
        report.refunds_seen,
        len(report.changes),
        len(report.errors),
    )
    return report


def _reconcile_pending(report: ReconcileReport, gateway: PaymentGateway) -> None:
    now = timezone.now()
    # An order flagged for review is an owner's now: reported once, not on every run.
    pending = Order.objects.filter(status=OrderStatus.PENDING, needs_review=False).order_by("id")
    for order in pending.iterator(chunk_size=200):
        report.checked += 1
        if not order.checkout_session_id:
            # Its checkout URL never reached anyone; once past its window nothing can pay it.
            if order.checkout_expires_at < now and order_transition(
                order=order, to=OrderStatus.EXPIRED, cause="reconcile"
            ):
                report.changes.append(f"{order.reference}: expired (checkout never opened)")
            continue
        try:
            session = gateway.retrieve_checkout_session(order.checkout_session_id)
        except SessionMissing:
            order_flag_for_review(
                order=order,
                reason=f"the provider has no checkout session {order.checkout_session_id}",
            )
            report.changes.append(f"{order.reference}: flagged: its checkout session is unknown")
            continue
        except PaymentError as exc:
            report.errors.append(f"{order.reference}: {exc}")
            continue
        outcome = order_apply_session(session=session, cause="reconcile")
        if outcome.kind in {Kind.APPLIED, Kind.FLAGGED}:
            report.changes.append(f"{order.reference}: {outcome}")
    # Whatever Stripe could not tell (unreachable, a payment still processing): a checkout long
    # past its end gives its stock back.
    for order in orders_expire_overdue(now=now):
        report.changes.append(f"{order.reference}: expired (checkout ended, stock released)")


def _reconcile_refunds(report: ReconcileReport, gateway: PaymentGateway) -> None:
    refunded: dict[str, int] = defaultdict(int)
    try:
        for refund in gateway.list_refunds(created_after=timezone.now() - REFUNDS_LOOKBACK):
            report.refunds_seen += 1
            if refund.status == "succeeded" and refund.payment_intent_id:
                refunded[refund.payment_intent_id] += refund.amount
    except PaymentError as exc:
        report.errors.append(f"refunds: {exc}")
        return
    for payment_intent_id, amount in refunded.items():
        outcome = order_apply_refund(
            charge=RefundedCharge(payment_intent_id=payment_intent_id, amount_refunded=amount),
            cause="reconcile",
        )
        if outcome.changed and outcome.order is not None:
            report.changes.append(f"{outcome.order.reference}: {outcome}")
