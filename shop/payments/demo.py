"""Demo payments: a complete provider behind the same interface as Stripe, with a local page
standing in for Stripe's hosted one. Used when no Stripe key is set (and, in production, only
when asked for with SHOP_DEMO_PAYMENTS).

Sessions live in the orders themselves: the demo session of an order is open while the order is
pending (until its expiry time, as at Stripe), complete once it is paid. Its Pay step answers
what Stripe would report after a payment, and the shop applies that through the same
fulfilment function as a real payment; nothing leaves the machine.
"""

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime

from django.urls import reverse
from django.utils import timezone

from shop.orders.models import Order, OrderStatus
from shop.payments.types import (
    CheckoutRequest,
    CheckoutSession,
    PaymentError,
    ProviderDispute,
    ProviderRefund,
    RefundRequest,
    SessionNotOpen,
)

DEMO_SESSION_PREFIX = "cs_demo_"
DEMO_REFUND_PREFIX = "re_demo_"


def demo_session_id(order_reference: str) -> str:
    return DEMO_SESSION_PREFIX + order_reference


class DemoGateway:
    def create_checkout_session(self, request: CheckoutRequest) -> CheckoutSession:
        session_id = demo_session_id(request.order_reference)
        order = Order.objects.get(reference=request.order_reference)
        return _session_for(order, session_id)

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSession:
        order = Order.objects.filter(checkout_session_id=session_id).first()
        if order is None or not session_id.startswith(DEMO_SESSION_PREFIX):
            raise PaymentError("No such demo checkout session.")
        return _session_for(order, session_id)

    def expire_checkout_session(self, session_id: str) -> CheckoutSession:
        session = self.retrieve_checkout_session(session_id)
        if session.status != "open":
            raise SessionNotOpen(f"demo session {session_id} is {session.status}")
        return replace(session, status="expired")

    def list_refunds(
        self, *, created_after: datetime | None = None, payment_intent_id: str | None = None
    ) -> Iterator[ProviderRefund]:
        # Demo refunds are made by the shop itself and recorded as they are made: the shop's
        # own records are this provider's memory, as its orders are of its sessions.
        from shop.refunds.models import Refund

        refunds = Refund.objects.filter(provider_refund_id__startswith=DEMO_REFUND_PREFIX)
        if created_after is not None:
            refunds = refunds.filter(created_at__gte=created_after)
        if payment_intent_id is not None:
            refunds = refunds.filter(payment_intent_id=payment_intent_id)
        for refund in refunds.order_by("-id"):
            yield ProviderRefund(
                id=refund.provider_refund_id or "",
                payment_intent_id=refund.payment_intent_id,
                amount=refund.amount,
                currency=refund.currency,
                status=refund.status,
                reason=refund.reason or None,
                shop_refund_id=refund.pk,
            )

    def list_disputes(self, *, created_after: datetime) -> Iterator[ProviderDispute]:
        # Nobody can dispute a payment that took no money.
        return iter(())

    def create_refund(self, request: RefundRequest) -> ProviderRefund:
        # Given back at once, and the same answer for the same refund however often asked.
        return ProviderRefund(
            id=f"{DEMO_REFUND_PREFIX}{request.shop_refund_id}",
            payment_intent_id=request.payment_intent_id,
            amount=request.amount,
            currency="usd",
            status="succeeded",
            reason=request.reason,
            shop_refund_id=request.shop_refund_id,
        )

    def pay_checkout_session(self, session_id: str, *, email: str) -> CheckoutSession:
        session = self.retrieve_checkout_session(session_id)
        if session.status != "open":
            raise SessionNotOpen(f"demo session {session_id} is {session.status}")
        return replace(
            session,
            status="complete",
            payment_status="paid",
            payment_intent_id="pi_demo_" + session_id.removeprefix(DEMO_SESSION_PREFIX),
            customer_email=email,
        )


def _session_for(order: Order, session_id: str) -> CheckoutSession:
    status, payment_status = {
        OrderStatus.PAID: ("complete", "paid"),
        OrderStatus.REFUNDED: ("complete", "paid"),
        OrderStatus.FAILED: ("complete", "unpaid"),
        OrderStatus.EXPIRED: ("expired", "unpaid"),
    }.get(OrderStatus(order.status), ("open", "unpaid"))
    if status == "open" and order.checkout_expires_at <= timezone.now():
        # Like Stripe's: past its expires_at a session can no longer be paid.
        status = "expired"
    return CheckoutSession(
        id=session_id,
        url=reverse("shop:demo_checkout", args=[session_id]),
        status=status,
        payment_status=payment_status,
        order_reference=order.reference,
        amount_total=order.amount_total,
        currency=order.currency,
        payment_intent_id=order.payment_intent_id or None,
    )
