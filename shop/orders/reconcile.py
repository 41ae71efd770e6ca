"""Catching up with the provider when webhooks were missed.

Pending orders: ask about each one's session. Paid orders: list the refunds and disputes of
the last REFUNDS_LOOKBACK days (one call per hundred, not one per order) and apply each.
Everything goes through the same idempotent functions as webhooks.
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from shop.orders.models import Order, OrderStatus
from shop.orders.services import (
    order_apply_session,
    order_flag_for_review,
    order_transition,
    orders_expire_overdue,
)
from shop.payments import get_gateway
from shop.payments.types import PaymentError, PaymentGateway, SessionMissing
from shop.refunds.services import dispute_apply, refund_apply
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
    since = timezone.now() - REFUNDS_LOOKBACK
    try:
        refunds = list(gateway.list_refunds(created_after=since))
        disputes = list(gateway.list_disputes(created_after=since))
    except PaymentError as exc:
        report.errors.append(f"refunds and disputes: {exc}")
        return
    report.refunds_seen = len(refunds)
    # Oldest first, as they happened.
    for refund in reversed(refunds):
        outcome = refund_apply(refund=refund, cause="reconcile")
        if outcome.changed and outcome.order is not None:
            report.changes.append(f"{outcome.order.reference}: {outcome}")
    for dispute in reversed(disputes):
        outcome = dispute_apply(dispute=dispute, cause="reconcile")
        if outcome.changed and outcome.order is not None:
            report.changes.append(f"{outcome.order.reference}: {outcome}")
