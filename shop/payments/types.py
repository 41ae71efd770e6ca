"""Plain data exchanged with payment providers; nothing here knows the stripe SDK."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


class PaymentError(Exception):
    """The provider could not be reached or refused the request; no money moved."""


class SessionNotOpen(PaymentError):
    """Expiring a session that is no longer open (it may have been paid)."""


class InvalidWebhook(Exception):
    """A webhook delivery whose signature or body cannot be trusted."""


@dataclass(frozen=True)
class CheckoutLine:
    name: str
    unit_amount: int
    quantity: int


@dataclass(frozen=True)
class CheckoutRequest:
    order_reference: str
    currency: str
    lines: tuple[CheckoutLine, ...]
    success_url: str
    cancel_url: str
    expires_at: datetime
    idempotency_key: str


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str | None
    status: str  # open | complete | expired
    payment_status: str  # paid | unpaid | no_payment_required
    order_reference: str | None
    amount_total: int | None
    currency: str | None
    payment_intent_id: str | None = None
    payment_intent_status: str | None = None

    @classmethod
    def from_stripe_dict(cls, data: dict[str, Any]) -> "CheckoutSession":
        metadata = data.get("metadata")
        if not isinstance(metadata, dict):
            metadata = {}
        reference = data.get("client_reference_id") or metadata.get("order_id")
        if metadata.get("order_id") and metadata.get("order_id") != reference:
            # Two names for the order that disagree: trust neither.
            reference = None
        intent = data.get("payment_intent")
        intent_id = intent.get("id") if isinstance(intent, dict) else intent
        intent_status = intent.get("status") if isinstance(intent, dict) else None
        amount = data.get("amount_total")
        return cls(
            id=_stripe_id(data.get("id")) or "",
            url=data.get("url"),
            status=str(data.get("status") or ""),
            payment_status=str(data.get("payment_status") or ""),
            order_reference=reference if isinstance(reference, str) else None,
            amount_total=amount
            if isinstance(amount, int) and not isinstance(amount, bool)
            else None,
            currency=data.get("currency"),
            payment_intent_id=_stripe_id(intent_id),
            payment_intent_status=intent_status if isinstance(intent_status, str) else None,
        )


def _stripe_id(value: Any) -> str | None:
    """Stripe ids are short ASCII strings; anything else is treated as absent."""
    if isinstance(value, str) and 0 < len(value) <= 255 and value.isascii():
        return value
    return None


@dataclass(frozen=True)
class RefundedCharge:
    """What a charge.refunded event says: which payment, and how much of it is refunded."""

    payment_intent_id: str | None
    amount_refunded: int | None

    @classmethod
    def from_stripe_dict(cls, data: dict[str, Any]) -> "RefundedCharge":
        refunded = data.get("amount_refunded")
        return cls(
            payment_intent_id=_stripe_id(data.get("payment_intent")),
            amount_refunded=refunded
            if isinstance(refunded, int) and not isinstance(refunded, bool)
            else None,
        )


@dataclass(frozen=True)
class WebhookEventData:
    id: str
    type: str
    object: dict[str, Any]
    payload: dict[str, Any]


class PaymentGateway(Protocol):
    def create_checkout_session(self, request: CheckoutRequest) -> CheckoutSession: ...

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSession: ...

    def expire_checkout_session(self, session_id: str) -> CheckoutSession: ...
