"""Plain data exchanged with payment providers; nothing here knows the stripe SDK."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol


class PaymentError(Exception):
    """The provider could not be reached or refused the request; no money moved."""


class SessionNotOpen(PaymentError):
    """The provider refused to expire a session: it may be complete (paid!) or expired."""


class SessionMissing(PaymentError):
    """The provider does not know this session (deleted test data, another account)."""


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
class RefundRequest:
    payment_intent_id: str
    amount: int
    reason: str | None
    order_reference: str
    shop_refund_id: int
    idempotency_key: str


class RefundRefused(PaymentError):
    """The provider will not make this refund (already refunded, more than remains…)."""


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
    customer_email: str | None = None

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
        details = data.get("customer_details")
        email = details.get("email") if isinstance(details, dict) else None
        return cls(
            id=_stripe_id(data.get("id")) or "",
            url=data.get("url"),
            status=str(data.get("status") or ""),
            payment_status=str(data.get("payment_status") or ""),
            order_reference=reference if isinstance(reference, str) else None,
            amount_total=_amount(amount),
            currency=data.get("currency"),
            payment_intent_id=_stripe_id(intent_id),
            payment_intent_status=intent_status if isinstance(intent_status, str) else None,
            customer_email=email if isinstance(email, str) and 0 < len(email) <= 254 else None,
        )


# Stripe's largest amount in the smallest currency unit (eight digits).
MAX_PROVIDER_AMOUNT = 99_999_999


def _amount(value: Any) -> int | None:
    """An amount in cents as Stripe can send it; anything else is treated as absent."""
    valid = isinstance(value, int) and not isinstance(value, bool)
    return value if valid and 0 <= value <= MAX_PROVIDER_AMOUNT else None


def _stripe_id(value: Any) -> str | None:
    """Stripe ids are short ASCII strings; anything else is treated as absent."""
    if isinstance(value, str) and 0 < len(value) <= 255 and value.isascii():
        return value
    return None


# Where the shop names its own refund in the provider's metadata.
REFUND_METADATA_KEY = "refund_id"


@dataclass(frozen=True)
class ProviderRefund:
    """A refund as the provider reports it, whoever started it (the shop or the dashboard)."""

    id: str
    payment_intent_id: str | None
    amount: int
    currency: str
    status: str  # pending | requires_action | succeeded | failed | canceled
    reason: str | None = None
    failure_reason: str | None = None
    # The shop's own Refund id, for a refund the shop asked for (from the metadata).
    shop_refund_id: int | None = None

    @classmethod
    def from_stripe_dict(cls, data: dict[str, Any]) -> "ProviderRefund | None":
        amount = _amount(data.get("amount"))
        refund_id = _stripe_id(data.get("id"))
        if refund_id is None or amount is None:
            return None
        metadata = data.get("metadata")
        mine = metadata.get(REFUND_METADATA_KEY) if isinstance(metadata, dict) else None
        shop_refund_id = None
        if isinstance(mine, str) and mine.isascii() and mine.isdigit() and len(mine) < 19:
            shop_refund_id = int(mine)
        reason, failure = data.get("reason"), data.get("failure_reason")
        return cls(
            id=refund_id,
            payment_intent_id=_stripe_id(data.get("payment_intent")),
            amount=amount,
            currency=_short(data.get("currency"), 3) or "",
            status=_short(data.get("status"), 32) or "",
            reason=_short(reason, 32),
            failure_reason=_short(failure, 100),
            shop_refund_id=shop_refund_id,
        )


@dataclass(frozen=True)
class RefundedCharge:
    """What a charge.refunded event says: which payment, how much of it is refunded in all,
    and the refunds it lists (recent API versions list none)."""

    payment_intent_id: str | None
    amount_refunded: int | None
    refunds: tuple[ProviderRefund, ...] = ()

    @classmethod
    def from_stripe_dict(cls, data: dict[str, Any]) -> "RefundedCharge":
        listed = data.get("refunds")
        items = listed.get("data") if isinstance(listed, dict) else None
        refunds = tuple(
            refund
            for item in (items if isinstance(items, list) else [])[:100]
            if isinstance(item, dict) and (refund := ProviderRefund.from_stripe_dict(item))
        )
        return cls(
            payment_intent_id=_stripe_id(data.get("payment_intent")),
            amount_refunded=_amount(data.get("amount_refunded")),
            refunds=refunds,
        )


@dataclass(frozen=True)
class ProviderDispute:
    """A chargeback as the provider reports it."""

    id: str
    payment_intent_id: str | None
    amount: int
    currency: str
    reason: str
    status: str  # warning_needs_response, needs_response, under_review, won, lost, …
    evidence_due_by: datetime | None

    @classmethod
    def from_stripe_dict(cls, data: dict[str, Any]) -> "ProviderDispute | None":
        dispute_id = _stripe_id(data.get("id"))
        amount = _amount(data.get("amount"))
        if dispute_id is None or amount is None:
            return None
        details = data.get("evidence_details")
        due = details.get("due_by") if isinstance(details, dict) else None
        due_by = None
        if isinstance(due, int) and not isinstance(due, bool) and 0 < due < 2**33:
            due_by = datetime.fromtimestamp(due, tz=UTC)
        return cls(
            id=dispute_id,
            payment_intent_id=_stripe_id(data.get("payment_intent")),
            amount=amount,
            currency=_short(data.get("currency"), 3) or "",
            reason=_short(data.get("reason"), 64) or "",
            status=_short(data.get("status"), 32) or "",
            evidence_due_by=due_by,
        )


def _short(value: Any, limit: int) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


@dataclass(frozen=True)
class Event:
    """A verified provider event, decoded once. `payload` is the raw event, kept for replays."""

    id: str
    type: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class SessionEvent(Event):
    session: CheckoutSession
    payment_failed: bool  # checkout.session.async_payment_failed


@dataclass(frozen=True)
class ChargeRefundedEvent(Event):
    charge: RefundedCharge


@dataclass(frozen=True)
class RefundEvent(Event):
    refund: ProviderRefund


@dataclass(frozen=True)
class DisputeEvent(Event):
    dispute: ProviderDispute


@dataclass(frozen=True)
class UnhandledEvent(Event):
    """A well-formed event of a type the shop does not act on."""


REFUND_EVENT_TYPES = frozenset({"refund.created", "refund.updated", "refund.failed"})
DISPUTE_EVENT_TYPES = frozenset(
    {"charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed"}
)
SESSION_EVENT_TYPES = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
    }
)


def decode_event(data: Any) -> Event:
    """A Stripe event (parsed JSON) as typed data; InvalidWebhook if it is not an event."""
    if not isinstance(data, dict):
        raise InvalidWebhook("body is not a JSON object")
    event_id, event_type, inner = data.get("id"), data.get("type"), data.get("data")
    obj = inner.get("object") if isinstance(inner, dict) else None
    if not (
        isinstance(event_id, str)
        and event_id
        and isinstance(event_type, str)
        and isinstance(obj, dict)
    ):
        raise InvalidWebhook("body is not a Stripe event")
    event_id, event_type = event_id[:255], event_type[:100]
    if event_type in SESSION_EVENT_TYPES:
        return SessionEvent(
            event_id,
            event_type,
            data,
            session=CheckoutSession.from_stripe_dict(obj),
            payment_failed=event_type == "checkout.session.async_payment_failed",
        )
    if event_type == "charge.refunded":
        return ChargeRefundedEvent(
            event_id, event_type, data, charge=RefundedCharge.from_stripe_dict(obj)
        )
    if event_type in REFUND_EVENT_TYPES:
        refund = ProviderRefund.from_stripe_dict(obj)
        if refund is not None:
            return RefundEvent(event_id, event_type, data, refund=refund)
    if event_type in DISPUTE_EVENT_TYPES:
        dispute = ProviderDispute.from_stripe_dict(obj)
        if dispute is not None:
            return DisputeEvent(event_id, event_type, data, dispute=dispute)
    return UnhandledEvent(event_id, event_type, data)


class PaymentGateway(Protocol):
    def create_checkout_session(self, request: CheckoutRequest) -> CheckoutSession: ...

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSession: ...

    def expire_checkout_session(self, session_id: str) -> CheckoutSession:
        """Close an open session; SessionNotOpen if the provider says it is not open."""
        ...

    def pay_checkout_session(self, session_id: str, *, email: str) -> CheckoutSession:
        """The customer's Pay on the provider's hosted page, for a provider whose page is the
        shop's own (the demo). Stripe's page is Stripe's: its provider raises PaymentError."""
        ...

    def list_refunds(
        self, *, created_after: datetime | None = None, payment_intent_id: str | None = None
    ) -> Iterator[ProviderRefund]:
        """Refunds created since `created_after` (or of one payment), newest first, page by
        page (one call per hundred)."""
        ...

    def list_disputes(self, *, created_after: datetime) -> Iterator[ProviderDispute]:
        """Disputes created since `created_after`, newest first, one call per hundred."""
        ...

    def create_refund(self, request: "RefundRequest") -> ProviderRefund:
        """Give money back. `request.idempotency_key` makes a retry return the same refund."""
        ...
