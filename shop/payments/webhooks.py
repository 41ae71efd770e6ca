"""Receiving Stripe webhooks: verify, keep the delivery, process each event once.

Order of work (Stripe's and Zulip's advice): verify the signature over the raw body, store the
delivery, dedupe by event id in the database, then hand the event to the order functions, and
record the outcome's kind and message on the event.

Where the event is applied is SHOP_WEBHOOK_PROCESSING's choice. In the request (the default), a
failure is answered with 500 so Stripe retries. In the worker, the delivery and a task to process
it are written in one transaction and the answer is 202 at once: the stored delivery is the
source of truth, the task applies it (the same function), a failure is recorded and retried by
the worker itself, and housekeeping gives a task again to any queued delivery that lost its own.
Either way the stored event can be replayed by an operator.
"""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from shop.background.engine import tasks_resume
from shop.orders.services import order_apply_session
from shop.payments.models import WebhookDelivery, WebhookEvent
from shop.payments.statements import (
    DeliveryRow,
    EventRow,
    delivery_insert,
    delivery_insert_queued,
    event_upsert_locked,
)
from shop.payments.stripe_gateway import verify_webhook
from shop.payments.types import (
    ChargeRefundedEvent,
    DisputeEvent,
    Event,
    InvalidWebhook,
    RefundEvent,
    SessionEvent,
    decode_event,
)
from shop.refunds.services import dispute_apply, refund_apply, refunds_apply_charge
from shop.results import Kind, Outcome, describe

logger = logging.getLogger(__name__)

KEPT_HEADERS = ("Stripe-Signature", "User-Agent", "Content-Type", "Content-Length")
# A refused delivery is kept only as far as an operator needs it: who, when, why, how big, and
# the start of the body. Past these counts per hour nothing more is written (still answered).
REFUSED_BODY_PREFIX = 200
REFUSED_KEPT_PER_ADDRESS_PER_HOUR = 60
REFUSED_KEPT_PER_HOUR = 1000


@dataclass(frozen=True)
class WebhookResult:
    kind: Kind
    message: str

    def __str__(self) -> str:
        return describe(self.kind, self.message)


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
        logger.warning("webhook refused from %s: %s", remote_addr, exc)
        if _refusal_may_be_kept(remote_addr):
            _refusal_create(
                body=body,
                headers=headers,
                remote_addr=remote_addr,
                result=WebhookResult(Kind.REFUSED, str(exc)),
            )
        return WebhookResult(Kind.REFUSED, "invalid webhook")

    if processing_in_worker():
        return _delivery_queue(body=body, headers=headers, remote_addr=remote_addr, event=event)
    # Kept (and committed) before processing: nothing a customer paid for rests on one attempt.
    # An event applied before has a final outcome, and its delivery is kept with it at once.
    delivery = _delivery_create(body=body, headers=headers, remote_addr=remote_addr, event=event)
    if delivery.kind:
        return _duplicate(delivery)
    return webhook_event_process(event=event, delivery_id=delivery.id)


def processing_in_worker() -> bool:
    return settings.SHOP_WEBHOOK_PROCESSING == "worker"


def _delivery_queue(
    *, body: bytes, headers: dict[str, str], remote_addr: str | None, event: Event
) -> WebhookResult:
    """Keep the delivery and queue its processing, together or not at all: a committed delivery
    always has its task, and a failed write is a 500 that Stripe retries."""
    from shop.payments.tasks import webhook_delivery_process_task

    delivery, task_id = delivery_insert_queued(
        values=_delivery_values(body=body, headers=headers, remote_addr=remote_addr, event=event),
        event_id=event.id,
        duplicate_kind=Kind.DUPLICATE.value,
        duplicate_prefix=_duplicate_prefix(),
        task=webhook_delivery_process_task,
    )
    if delivery.kind:
        return _duplicate(delivery)
    # In place of the engine's own line for an enqueue (its task_enqueued signal, which a row
    # written by our statement does not send).
    logger.info("webhook event %s (%s) kept and queued: task %s", event.id, event.type, task_id)
    return WebhookResult(Kind.QUEUED, f"{event.type} kept; the worker applies it")


class ProcessingFailed(Exception):
    """A queued delivery's processing failed; its next attempt is planned (or given up)."""


def webhook_delivery_process(*, delivery_id: int, attempt: int = 1) -> WebhookResult:
    """Apply the event a queued delivery brought (the worker's task); unless it is settled.

    A failure is recorded on the event and the delivery, and the next attempt is written in the
    same transaction; then it is raised, so the task's own record keeps it too.
    """
    row = (
        WebhookDelivery.objects.filter(pk=delivery_id, signature_valid=True)
        .values_list("body", "kind", "received_at")
        .first()
    )
    if row is None:
        return WebhookResult(Kind.IGNORED, f"no verified delivery {delivery_id}")
    body, kind, received_at = row
    if kind and Kind(kind).settled:
        return WebhookResult(Kind.DUPLICATE, f"delivery {delivery_id} is {kind} already")
    try:
        # The body was verified and decoded when it came; it is stored whole.
        event = decode_event(json.loads(body))
    except (ValueError, InvalidWebhook) as exc:
        result = WebhookResult(Kind.REFUSED, f"stored body is not an event: {exc}")
        _delivery_finish(delivery_id, result)
        return result

    def next_attempt() -> None:
        if timezone.now() - received_at >= timedelta(hours=settings.SHOP_WEBHOOK_RETRY_HOURS):
            logger.error(
                "webhook delivery %s (event %s) failed %d times in %s hours: given up, "
                "replay it from the admin once the cause is fixed",
                delivery_id,
                event.id,
                attempt,
                settings.SHOP_WEBHOOK_RETRY_HOURS,
            )
            return
        from shop.payments.tasks import webhook_delivery_process_task

        webhook_delivery_process_task.using(
            run_after=timezone.now() + webhook_retry_delay(attempt)
        ).enqueue(delivery_id=delivery_id, attempt=attempt + 1)

    result = webhook_event_process(
        event=event, delivery_id=delivery_id, on_failure=next_attempt, retried_by="the worker"
    )
    if result.kind == Kind.FAILED:
        raise ProcessingFailed(f"delivery {delivery_id} (event {event.id}), attempt {attempt}")
    return result


def webhook_retry_delay(attempt: int) -> timedelta:
    """The pause after the `attempt`th failure: doubling from the first, up to the longest."""
    first = settings.SHOP_WEBHOOK_RETRY_FIRST_SECONDS
    seconds = min(first * 2 ** min(attempt - 1, 30), settings.SHOP_WEBHOOK_RETRY_MAX_SECONDS)
    return timedelta(seconds=seconds)


def webhook_deliveries_resume() -> list[int]:
    """Give a task again to every queued delivery, still within its retry period, that has none
    waiting or running; their ids (SHOP_WEBHOOK_PROCESSING=worker; run by housekeeping).

    A queued delivery always has one (written with it; each failed attempt writes the next in
    the transaction that records the failure), unless a task row was lost: then this is what
    keeps a paid order from never being applied.
    """
    if not processing_in_worker():
        return []
    from shop.payments.tasks import webhook_delivery_process_task

    return tasks_resume(
        webhook_delivery_process_task,
        key="delivery_id",
        waiting=WebhookDelivery.objects.filter(
            signature_valid=True,
            kind__in=["", Kind.FAILED],
            received_at__gte=timezone.now() - timedelta(hours=settings.SHOP_WEBHOOK_RETRY_HOURS),
        ),
        enqueue=lambda delivery_id: webhook_delivery_process_task.enqueue(delivery_id=delivery_id),
        label="webhook delivery",
        limit=1000,
    )


def webhook_event_process(
    *,
    event: Event,
    delivery_id: int | None = None,
    on_failure: Callable[[], None] | None = None,
    retried_by: str = "Stripe",
) -> WebhookResult:
    """Apply one verified event exactly once, however many times and however concurrently it
    arrives; record the outcome on the event (and on the delivery that brought it).

    On failure, `on_failure` runs in the transaction that records it.
    """
    try:
        with transaction.atomic():
            record = _event_record_locked(event)
            if record.processed:
                result = WebhookResult(Kind.DUPLICATE, record.outcome)
            else:
                outcome = _dispatch(event)
                WebhookEvent.objects.filter(pk=record.id).update(
                    processed_at=timezone.now(),
                    kind=outcome.kind,
                    outcome=str(outcome)[:200],
                    error="",
                    attempts=F("attempts") + 1,
                )
                result = WebhookResult(outcome.kind, outcome.message)
                logger.info("webhook event %s (%s): %s", event.id, event.type, outcome)
            _delivery_finish(delivery_id, result)
    except Exception as exc:
        # Everything the attempt wrote is rolled back; what failed is kept on the event for the
        # operator, and it is tried again: by Stripe after the 500, or by the worker.
        logger.exception("webhook event %s (%s) failed", event.id, event.type)
        with transaction.atomic():
            record = _event_record_locked(event)
            WebhookEvent.objects.filter(pk=record.id).update(
                kind=Kind.FAILED,
                attempts=F("attempts") + 1,
                error=f"{type(exc).__name__}: {exc}"[:2000],
            )
            result = WebhookResult(Kind.FAILED, f"processing failed; {retried_by} will retry")
            _delivery_finish(delivery_id, result)
            if on_failure is not None:
                on_failure()
    return result


def webhook_event_replay(*, record: WebhookEvent) -> WebhookResult:
    """Process a stored event again (for an operator); an already processed one is a no-op."""
    try:
        event = decode_event(record.payload)
    except InvalidWebhook as exc:
        return WebhookResult(Kind.REFUSED, f"stored payload is not an event: {exc}")
    return webhook_event_process(event=event)


def webhook_deliveries_prune(*, older_than_days: int, refused_older_than_hours: int) -> int:
    """Delete deliveries that need nothing more: settled ones after `older_than_days`, refused
    ones (forged, or from a misconfigured sender) much sooner. Failed ones stay for replay."""
    now = timezone.now()
    settled = WebhookDelivery.objects.filter(
        received_at__lt=now - timedelta(days=older_than_days),
        kind__in=[kind for kind in Kind if kind.settled],
    )
    refused = WebhookDelivery.objects.filter(
        received_at__lt=now - timedelta(hours=refused_older_than_hours), kind=Kind.REFUSED
    )
    deleted, _ = (settled | refused).delete()
    return deleted


def _dispatch(event: Event) -> Outcome:
    if isinstance(event, SessionEvent):
        return order_apply_session(
            session=event.session,
            cause=event.type,
            event_id=event.id,
            payment_failed=event.payment_failed,
        )
    if isinstance(event, ChargeRefundedEvent):
        return refunds_apply_charge(charge=event.charge, cause=event.type, event_id=event.id)
    if isinstance(event, RefundEvent):
        return refund_apply(refund=event.refund, cause=event.type, event_id=event.id)
    if isinstance(event, DisputeEvent):
        return dispute_apply(dispute=event.dispute, cause=event.type, event_id=event.id)
    return Outcome(Kind.IGNORED, f"{event.type} is not an event this shop handles")


def _event_record_locked(event: Event) -> EventRow:
    """The event's row, created if new, locked: deliveries of one event queue here and the
    first one through does the work."""
    return event_upsert_locked(event_id=event.id, type=event.type, payload=event.payload)


def _delivery_finish(delivery_id: int | None, result: WebhookResult) -> None:
    """Record the delivery's outcome, unless it has a final one: a second run of its task (a
    worker thought lost that was only slow) finds the event applied, and must not relabel the
    delivery that applied it a duplicate."""
    if delivery_id is None:
        return
    WebhookDelivery.objects.filter(pk=delivery_id, kind__in=["", Kind.FAILED]).update(
        kind=result.kind,
        outcome=str(result)[:200],
        error="" if result.kind.settled else result.message,
    )


def _refusal_may_be_kept(remote_addr: str | None) -> bool:
    """Count refusals per address and overall in the shared cache; past either limit this hour,
    refusals are answered but no longer written, so a flood cannot fill the disk."""
    hour = timezone.now().strftime("%Y%m%d%H")
    kept = True
    for key, limit in (
        (f"webhook-refused:{remote_addr}:{hour}", REFUSED_KEPT_PER_ADDRESS_PER_HOUR),
        (f"webhook-refused:*:{hour}", REFUSED_KEPT_PER_HOUR),
    ):
        cache.add(key, 0, timeout=3600)
        try:
            count = cache.incr(key)
        except ValueError:  # evicted between add and incr
            count = 1
        if count == limit + 1:
            logger.error("webhook refusals past %d this hour (%s): no longer recorded", limit, key)
        kept = kept and count <= limit
    return kept


def _delivery_create(
    *, body: bytes, headers: dict[str, str], remote_addr: str | None, event: Event
) -> DeliveryRow:
    """Keep a verified delivery whole, settled at once as a duplicate if its event was applied
    before."""
    return delivery_insert(
        values=_delivery_values(body=body, headers=headers, remote_addr=remote_addr, event=event),
        event_id=event.id,
        duplicate_kind=Kind.DUPLICATE.value,
        duplicate_prefix=_duplicate_prefix(),
    )


def _refusal_create(
    *, body: bytes, headers: dict[str, str], remote_addr: str | None, result: WebhookResult
) -> None:
    """Keep a refused delivery: its first bytes and why it was refused."""
    WebhookDelivery.objects.create(
        **_delivery_values(body=body, headers=headers, remote_addr=remote_addr, event=None),
        kind=result.kind,
        outcome=str(result)[:200],
        error=result.message,
    )


def _delivery_values(
    *, body: bytes, headers: dict[str, str], remote_addr: str | None, event: Event | None
) -> dict[str, Any]:
    text = body.decode("utf-8", errors="replace")
    if event is None:
        text = text[:REFUSED_BODY_PREFIX]
    return {
        "received_at": timezone.now(),
        "remote_addr": remote_addr,
        # Stored as text, NUL-free: PostgreSQL refuses NUL, and forged bodies are kept too.
        "headers": {
            name: headers[name][:500].replace("\x00", "\ufffd")
            for name in KEPT_HEADERS
            if name in headers
        },
        "body": text.replace("\x00", "\ufffd"),
        "body_size": len(body),
        "signature_valid": event is not None,
        "event_id": event.id if event else "",
        "event_type": event.type if event else "",
    }


def _duplicate(delivery: DeliveryRow) -> WebhookResult:
    """The outcome of a delivery settled as a duplicate when it was written."""
    return WebhookResult(Kind(delivery.kind), delivery.outcome.removeprefix(_duplicate_prefix()))


def _duplicate_prefix() -> str:
    return describe(Kind.DUPLICATE, "")
