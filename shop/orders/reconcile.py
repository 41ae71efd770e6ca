"""Catching up with Stripe when webhooks were missed: ask about every pending order."""

import logging
from dataclasses import dataclass, field

from django.utils import timezone

from shop.orders.models import Order, OrderStatus
from shop.orders.services import order_apply_session, order_transition, orders_expire_overdue
from shop.payments import get_gateway
from shop.payments.types import PaymentError
from shop.results import Kind

logger = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    checked: int = 0
    changes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def payments_reconcile() -> ReconcileReport:
    """Apply Stripe's view of every pending order through the same fulfilment path as webhooks."""
    report = ReconcileReport()
    gateway = get_gateway()
    now = timezone.now()
    pending = Order.objects.filter(status=OrderStatus.PENDING).order_by("id")
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
    logger.info(
        "reconcile: %d pending checked, %d changed, %d errors",
        report.checked,
        len(report.changes),
        len(report.errors),
    )
    return report
