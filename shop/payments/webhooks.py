"""Receiving Stripe webhooks: verify, keep the delivery, process each event once.

Order of work (Stripe's and Zulip's advice): verify the signature over the raw body, store the
delivery, dedupe by event id in the database, then hand the event to the order functions, and
record outcome and error on the event. A failure is answered with 500 so Stripe retries; the
stored delivery can also be replayed by an operator.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from shop.orders.services import Outcome, order_apply_refund, order_apply_session
from shop.payments.models import WebhookDelivery, WebhookEvent
from shop.payments.stripe_gateway import parse_event, verify_webhook
from shop.payments.types import CheckoutSession, InvalidWebhook, RefundedCharge, WebhookEventData

logger = logging.getLogger(__name__)

SESSION_EVENTS = {
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
}
HANDLED_EVENTS = SESSION_EVENTS | {"charge.refunded"}
KEPT_HEADERS = ("Stripe-Signature", "User-Agent", "Content-Type", "Content-Length")


@dataclass(frozen=True)
class WebhookResult:
    status: int
    message: str


def webhook_receive(
    *, body: bytes, headers: dict[str, str], remote_addr: str | None
) -> WebhookResult:
    try:
        event = verify_webhook(
            payload=body,
            signature=headers.get("Stripe-Signature"),
            secrets=settings.STRIPE_WEBHOOK_SECRETS,
            tolerance=settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS,
        )
    except InvalidWebhook as exc:
        _delivery_create(
            body=body,
            headers=headers,
            remote_addr=remote_addr,
            result=WebhookResult(400, f"rejected: {exc}"),
        )
        logger.warning("webhook rejected from %s: %s", remote_addr, exc)
        return WebhookResult(400, "invalid webhook")

    # An event applied before has a final outcome: its delivery is kept, with nothing to do.
    applied = (
        WebhookEvent.objects.filter(event_id=event.id, processed_at__isnull=False)
        .values_list("outcome", flat=True)
        .first()
    )
    if applied is not None:
        result = _duplicate(applied)
        _delivery_create(
            body=body, headers=headers, remote_addr=remote_addr, event=event, result=result
        )
        return result

    # Kept (and committed) before processing: nothing a customer paid for rests on one attempt.
    delivery = _delivery_create(body=body, headers=headers, remote_addr=remote_addr, event=event)
    return webhook_event_process(event=event, delivery_id=delivery.pk)


def webhook_event_process(
    *, event: WebhookEventData, delivery_id: int | None = None
) -> WebhookResult:
    """Apply one verified event exactly once, however many times and however concurrently it
    arrives; record the outcome on the event (and on the delivery that brought it)."""
    try:
        with transaction.atomic():
            record = _event_record_locked(event)
            if record.processed_at is not None:
                result = _duplicate(record.outcome)
            else:
                outcome = _dispatch(event)
                WebhookEvent.objects.filter(pk=record.pk).update(
                    processed_at=timezone.now(),
                    outcome=outcome.text[:200],
                    error="",
                    attempts=F("attempts") + 1,
                )
                result = WebhookResult(200, outcome.text)
                logger.info("webhook event %s (%s): %s", event.id, event.type, outcome.text)
            _delivery_finish(delivery_id, result)
    except Exception as exc:
        # Everything the attempt wrote is rolled back; what failed is kept on the event for the
        # operator, and the 500 makes Stripe deliver it again.
        logger.exception("webhook event %s (%s) failed", event.id, event.type)
        with transaction.atomic():
            record = _event_record_locked(event)
            WebhookEvent.objects.filter(pk=record.pk).update(
                attempts=F("attempts") + 1, error=f"{type(exc).__name__}: {exc}"[:2000]
            )
            result = WebhookResult(500, "processing failed; Stripe will retry")
            _delivery_finish(delivery_id, result)
    return result


def _duplicate(outcome: str) -> WebhookResult:
    return WebhookResult(200, f"duplicate: {outcome}"[:200])


def _event_record_locked(event: WebhookEventData) -> WebhookEvent:
    """The event's row, created if new, locked: deliveries of one event queue here and the
    first one through does the work."""
    # ON CONFLICT DO NOTHING: a concurrent delivery's insert makes this one wait for its commit
    # on PostgreSQL (SQLite runs one writer at a time), and no savepoint is needed.
    WebhookEvent.objects.bulk_create(
        [
            WebhookEvent(
                event_id=event.id,
                type=event.type,
                payload=event.payload,
                payment_intent_id=_refunded_intent(event),
            )
        ],
        ignore_conflicts=True,
    )
    # Without the payload: the outcome is what matters here, not 5 kB of JSON decoded.
    return (
        WebhookEvent.objects.select_for_update()
        .only("event_id", "processed_at", "outcome")
        .get(event_id=event.id)
    )


def _delivery_finish(delivery_id: int | None, result: WebhookResult) -> None:
    if delivery_id is None:
        return
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        processed=result.status < 300,
        outcome=result.message[:200],
        error="" if result.status < 300 else result.message,
    )


def _refunded_intent(event: WebhookEventData) -> str:
    if event.type != "charge.refunded":
        return ""
    return RefundedCharge.from_stripe_dict(event.object).payment_intent_id or ""


def webhook_event_replay(*, record: WebhookEvent) -> WebhookResult:
    """Process a stored event again (for an operator); an already processed one is a no-op."""
    try:
        event = parse_event_payload(record.payload)
    except InvalidWebhook as exc:
        return WebhookResult(400, f"stored payload is not an event: {exc}")
    return webhook_event_process(event=event)


def parse_event_payload(payload: Any) -> WebhookEventData:
    import json

    return parse_event(json.dumps(payload))


def webhook_deliveries_prune(*, older_than_days: int) -> int:
    """Delete old deliveries that need nothing more: processed ones and forged ones."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    old = WebhookDelivery.objects.filter(received_at__lt=cutoff)
    deleted, _ = (old.filter(processed=True) | old.filter(signature_valid=False)).delete()
    return deleted


def _dispatch(event: WebhookEventData) -> Outcome:
    if event.type in SESSION_EVENTS:
        session = CheckoutSession.from_stripe_dict(event.object)
        return order_apply_session(
            session=session,
            cause=event.type,
            event_id=event.id,
            payment_failed=event.type == "checkout.session.async_payment_failed",
        )
    if event.type == "charge.refunded":
        return order_apply_refund(
            charge=RefundedCharge.from_stripe_dict(event.object),
            cause=event.type,
            event_id=event.id,
        )
    return Outcome(f"ignored: {event.type} is not an event this shop handles")


def _delivery_create(
    *,
    body: bytes,
    headers: dict[str, str],
    remote_addr: str | None,
    event: WebhookEventData | None = None,
    result: WebhookResult | None = None,
) -> WebhookDelivery:
    """Keep one delivery; `result` when its outcome is known already (refused, duplicate)."""
    return WebhookDelivery.objects.create(
        remote_addr=remote_addr,
        # Stored as text, NUL-free: PostgreSQL refuses NUL, and forged bodies are kept too.
        headers={
            name: headers[name][:500].replace("\x00", "\ufffd")
            for name in KEPT_HEADERS
            if name in headers
        },
        body=body.decode("utf-8", errors="replace").replace("\x00", "\ufffd"),
        signature_valid=event is not None,
        event_id=event.id if event else "",
        event_type=event.type if event else "",
        processed=result is not None and result.status < 300,
        outcome=result.message[:200] if result else "",
    )
