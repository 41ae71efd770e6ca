"""The only module that imports `stripe`. Everything it returns is plain data (types.py)."""

import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, cast
from urllib.parse import quote

import requests
import stripe
from django.conf import settings
from stripe.params import DisputeListParams, RefundCreateParams, RefundListParams
from stripe.params.checkout import SessionCreateParams, SessionRetrieveParams

from shop.payments.types import (
    REFUND_METADATA_KEY,
    CheckoutRequest,
    CheckoutSession,
    Event,
    InvalidWebhook,
    PaymentError,
    ProviderDispute,
    ProviderRefund,
    RefundRefused,
    RefundRequest,
    SessionMissing,
    SessionNotOpen,
    decode_event,
)

logger = logging.getLogger(__name__)

SESSIONS_PATH = "/v1/checkout/sessions"
REFUNDS_PATH = "/v1/refunds"
DISPUTES_PATH = "/v1/disputes"
PAGE_SIZE = 100

# The SDK retries 5xx, 409 and dropped connections itself (max_network_retries); it does not
# retry 429, so rate limits get a short bounded retry here, with the same idempotency key.
RATE_LIMIT_RETRIES = 2
RATE_LIMIT_BACKOFF_SECONDS = 0.5


class StripeGateway:
    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    @classmethod
    def from_settings(cls) -> "StripeGateway":
        return cls(
            _client_for(
                settings.STRIPE_SECRET_KEY,
                settings.STRIPE_API_BASE,
                settings.STRIPE_TIMEOUT_SECONDS,
            )
        )

    def create_checkout_session(self, request: CheckoutRequest) -> CheckoutSession:
        params: SessionCreateParams = {
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": request.currency,
                        "unit_amount": line.unit_amount,
                        "product_data": {"name": line.name},
                    },
                    "quantity": line.quantity,
                }
                for line in request.lines
            ],
            "client_reference_id": request.order_reference,
            "metadata": {"order_id": request.order_reference},
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
            "expires_at": int(request.expires_at.timestamp()),
        }
        session = self._request(
            "create checkout session",
            "post",
            SESSIONS_PATH,
            **params,
            idempotency_key=request.idempotency_key,
        )
        return CheckoutSession.from_stripe_dict(session)

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSession:
        params: SessionRetrieveParams = {"expand": ["payment_intent"]}
        try:
            session = self._request(
                "retrieve checkout session",
                "get",
                f"{SESSIONS_PATH}/{quote(session_id, safe='')}",
                missing_is_known=True,
                **params,
            )
        except _Missing:
            raise SessionMissing(f"Stripe has no checkout session {session_id}") from None
        return CheckoutSession.from_stripe_dict(session)

    def list_refunds(
        self, *, created_after: datetime | None = None, payment_intent_id: str | None = None
    ) -> Iterator[ProviderRefund]:
        params: RefundListParams = {"limit": PAGE_SIZE}
        if created_after is not None:
            params["created"] = {"gte": int(created_after.timestamp())}
        if payment_intent_id is not None:
            params["payment_intent"] = payment_intent_id
        for item in self._pages("list refunds", REFUNDS_PATH, dict(params)):
            refund = ProviderRefund.from_stripe_dict(item)
            if refund is not None:
                yield refund

    def list_disputes(self, *, created_after: datetime) -> Iterator[ProviderDispute]:
        params: DisputeListParams = {
            "limit": PAGE_SIZE,
            "created": {"gte": int(created_after.timestamp())},
        }
        for item in self._pages("list disputes", DISPUTES_PATH, dict(params)):
            dispute = ProviderDispute.from_stripe_dict(item)
            if dispute is not None:
                yield dispute

    def _pages(self, what: str, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every object of a list endpoint, one request per page."""
        while True:
            page = self._request(what, "get", path, **params)
            data = page.get("data")
            if not isinstance(data, list):
                raise PaymentError(f"Stripe answered {what} without data.")
            yield from (item for item in data if isinstance(item, dict))
            if not page.get("has_more") or not data:
                return
            params["starting_after"] = data[-1]["id"]

    def create_refund(self, request: RefundRequest) -> ProviderRefund:
        params: RefundCreateParams = {
            "payment_intent": request.payment_intent_id,
            "amount": request.amount,
            "metadata": {
                "order_id": request.order_reference,
                REFUND_METADATA_KEY: str(request.shop_refund_id),
            },
        }
        if request.reason:
            params["reason"] = cast(Any, request.reason)
        try:
            data = self._request(
                "create refund",
                "post",
                REFUNDS_PATH,
                refusal_is_known=True,
                idempotency_key=request.idempotency_key,
                **params,
            )
        except _Refused:
            raise RefundRefused("Stripe refused the refund.") from None
        refund = ProviderRefund.from_stripe_dict(data)
        if refund is None:
            raise PaymentError("Stripe answered a refund without an id or amount.")
        return refund

    def expire_checkout_session(self, session_id: str) -> CheckoutSession:
        try:
            session = self._request(
                "expire checkout session",
                "post",
                f"{SESSIONS_PATH}/{quote(session_id, safe='')}/expire",
                refusal_is_known=True,
            )
        except _Refused:
            # Stripe refuses to expire a session that is not open; the caller asks Stripe
            # what the session is now rather than trusting the wording of an error message.
            raise SessionNotOpen(f"Stripe would not expire {session_id}") from None
        return CheckoutSession.from_stripe_dict(session)

    def pay_checkout_session(self, session_id: str, *, email: str) -> CheckoutSession:
        raise PaymentError("Customers pay on Stripe's own page; the shop cannot pay for them.")

    def _request(
        self,
        what: str,
        method: str,
        path: str,
        *,
        refusal_is_known: bool = False,
        missing_is_known: bool = False,
        **params: Any,
    ) -> dict[str, Any]:
        """One API call through the SDK (its retries, errors and idempotency keys), answered as
        plain JSON: building StripeObjects only to turn them back into a dict costs over a
        millisecond of CPU per Checkout Session on a small server."""
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            try:
                data = self._client.raw_request(method, path, **params).data
                if not isinstance(data, dict):
                    raise stripe.APIError("Stripe answered something other than an object.")
                return data
            except stripe.RateLimitError:
                if attempt == RATE_LIMIT_RETRIES:
                    logger.warning(
                        "stripe %s: still rate limited after %d tries", what, attempt + 1
                    )
                    raise PaymentError("Stripe is rate limiting requests.") from None
                time.sleep(RATE_LIMIT_BACKOFF_SECONDS * (attempt + 1))
            except stripe.InvalidRequestError as exc:
                if refusal_is_known and exc.http_status == 400:
                    raise _Refused() from None
                if missing_is_known and exc.code == "resource_missing":
                    raise _Missing() from None
                logger.error("stripe %s rejected: %s (param %s)", what, exc.user_message, exc.param)
                raise PaymentError("Stripe rejected the request.") from None
            except stripe.StripeError as exc:
                # Messages only, never the exception itself: its repr can carry request headers.
                logger.warning(
                    "stripe %s failed: %s %s", what, type(exc).__name__, exc.user_message or ""
                )
                raise PaymentError("Stripe could not be reached.") from None
        raise AssertionError("unreachable")


class _Refused(Exception):
    pass


class _Missing(Exception):
    pass


def _client_for(api_key: str, api_base: str, timeout: float) -> stripe.StripeClient:
    """This thread's client: it keeps a connection pool to Stripe across requests.

    Its `requests` session does not read the environment on every call (`trust_env`: proxy
    variables scanned and a .netrc looked for each time, about a tenth of a checkout's CPU).
    The environment's proxy for Stripe's address is read once, here, as `requests` would
    (NO_PROXY included); the SDK sets the CA bundle itself. A client and its session per
    thread, as the SDK keeps its own sessions (threaded app servers share nothing).
    """
    clients: dict[tuple[str, str, float], stripe.StripeClient] = _local.__dict__.setdefault(
        "clients", {}
    )
    key = (api_key, api_base, timeout)
    client = clients.get(key)
    if client is None:
        session = requests.Session()
        session.trust_env = False
        found = requests.utils.get_environ_proxies(api_base or STRIPE_API)
        proxy = stripe.HTTPClient._Proxy(http=found.get("http"), https=found.get("https"))
        client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=2,
            # Bounded: 3 attempts x timeout plus backoff keeps a checkout well under 45 s.
            http_client=stripe.RequestsClient(
                timeout=timeout, session=session, proxy=proxy if any(proxy.values()) else None
            ),
        )
        clients[key] = client
    return client


STRIPE_API = "https://api.stripe.com"
_local = threading.local()


def verify_webhook(
    *, payload: bytes, signature: str | None, secrets: Sequence[str], tolerance: int
) -> Event:
    """Check the Stripe-Signature header against each configured secret, then parse the body."""
    if not secrets:
        raise InvalidWebhook("no webhook secret is configured")
    if not signature:
        raise InvalidWebhook("missing Stripe-Signature header")
    if not signature.isascii():
        raise InvalidWebhook("malformed Stripe-Signature header")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidWebhook("body is not UTF-8") from None
    for secret in secrets:
        try:
            # Constant-time comparison and the timestamp tolerance are the SDK's.
            stripe.WebhookSignature.verify_header(text, signature, secret, tolerance)
            break
        except stripe.SignatureVerificationError:
            continue
    else:
        raise InvalidWebhook("signature does not match any configured secret or is too old")
    return parse_event(text)


MAX_JSON_DEPTH = 64


def parse_event(text: str) -> Event:
    # PostgreSQL's text and jsonb columns refuse NUL characters; Stripe never sends them.
    if "\x00" in text or "\\u0000" in text:
        raise InvalidWebhook("body contains NUL characters")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidWebhook("body is not JSON") from None
    # No deeper than its number of brackets: most events need no walk at all.
    brackets = text.count("{") + text.count("[")
    if brackets > MAX_JSON_DEPTH and _depth(data) > MAX_JSON_DEPTH:
        raise InvalidWebhook("body is nested too deeply")
    return decode_event(data)


def _depth(value: Any) -> int:
    """Nesting depth, without recursion (a hostile body may be thousands of levels deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_JSON_DEPTH:
            break
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return deepest
