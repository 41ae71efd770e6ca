"""Who hears about what, exactly once: emails recorded with the change that causes them.

A change of an order (paid, refunded, flagged) records each message it owes in its own
transaction, together with the task that sends it: a rolled-back change owes nothing, a committed
one is never forgotten. The task sends and then marks the record sent; a worker that dies
between the mail server's acceptance and that mark makes the message go twice, no crash makes it
go zero times. A failed send is tried again with growing pauses for a day, then marked failed
for the owner to see in the admin.
"""

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from shop.background.engine import tasks_enqueue_many, tasks_resume
from shop.notifications.emails import notification_message, orders_link_message
from shop.notifications.models import Notification, NotificationKind, NotificationStatus
from shop.orders.models import Order, OrderStatus
from shop.orders.selectors import orders_paid_with_email
from shop.refunds.models import Dispute, Refund, RefundStatus

logger = logging.getLogger(__name__)

# The messages an order owes when it enters a status (each status is entered at most once).
# Refunds are told one by one as each succeeds (notifications_queue_for_refunds).
ON_ENTERING: dict[OrderStatus, tuple[NotificationKind, ...]] = {
    OrderStatus.PAID: (NotificationKind.ORDER_CONFIRMATION, NotificationKind.NEW_ORDER),
}
TO_CUSTOMER = frozenset({NotificationKind.ORDER_CONFIRMATION, NotificationKind.REFUND})
ORDERS_LINK_ATTEMPTS = 6


def notifications_queue_for_status(*, order: Order, status: OrderStatus) -> list[Notification]:
    """Record and enqueue what entering `status` owes, in the caller's transaction.

    Called by the state machine once the order has moved: a status is entered once, so these
    records are new (and a unique constraint says so again).
    """
    kinds = ON_ENTERING.get(status, ())
    return _queue(order=order, kinds=kinds) if kinds else []


def notifications_queue_for_review(*, order: Order) -> list[Notification]:
    """Tell the owner an order needs review, the first time it is flagged."""
    with transaction.atomic(savepoint=False):
        # The caller has just updated the order's row, so a concurrent flag of the same order
        # waits for this transaction and then sees this record.
        if Notification.objects.filter(
            order=order, kind=NotificationKind.NEEDS_REVIEW, resend=False
        ).exists():
            return []
        return _queue(order=order, kinds=(NotificationKind.NEEDS_REVIEW,))


def notifications_queue_for_refunds(*, order: Order) -> list[Notification]:
    """A refund confirmation for each of the order's succeeded refunds not yet told, in the
    caller's transaction (which holds the payment's lock, so two callers cannot both tell one).

    An order refunded in full without any refund on record (a provider that reports only its
    total) gets one confirmation for the order instead.
    """
    if not order.email:
        return []
    with transaction.atomic(savepoint=False):
        untold = Refund.objects.filter(order=order, status=RefundStatus.SUCCEEDED).exclude(
            Exists(
                Notification.objects.filter(
                    refund=OuterRef("pk"), kind=NotificationKind.REFUND, resend=False
                )
            )
        )
        records = [
            Notification(
                order=order, kind=NotificationKind.REFUND, refund=refund, recipient=order.email
            )
            for refund in untold
        ]
        if (
            not records
            and order.status == OrderStatus.REFUNDED
            and not Refund.objects.filter(order=order, status=RefundStatus.SUCCEEDED).exists()
            and not Notification.objects.filter(order=order, kind=NotificationKind.REFUND).exists()
        ):
            records = [
                Notification(order=order, kind=NotificationKind.REFUND, recipient=order.email)
            ]
        created = Notification.objects.bulk_create(records)
        for notification in created:
            _enqueue_send(notification.pk)
    return created


def notifications_queue_for_sold_out(*, order: Order) -> list[Notification]:
    """Tell the owner a payment came after its stock was sold and is being given back."""
    return _queue(order=order, kinds=(NotificationKind.SOLD_OUT,))


def notifications_queue_for_dispute(*, order: Order, dispute: Dispute) -> list[Notification]:
    """Tell the owner about a new dispute, once per dispute, in the caller's transaction."""
    if not settings.SHOP_OWNER_EMAIL:
        logger.warning("order %s: no owner address for its dispute email", order.reference)
        return []
    with transaction.atomic(savepoint=False):
        created = Notification.objects.bulk_create(
            [
                Notification(
                    order=order,
                    kind=NotificationKind.DISPUTE,
                    dispute=dispute,
                    recipient=settings.SHOP_OWNER_EMAIL,
                )
            ]
        )
        for notification in created:
            _enqueue_send(notification.pk)
    return created


def notification_resend(*, notification: Notification) -> Notification:
    """An owner's deliberate extra copy: a record of its own, sent like the first."""
    with transaction.atomic():
        copy = Notification.objects.create(
            order_id=notification.order_id,
            kind=notification.kind,
            refund_id=notification.refund_id,
            dispute_id=notification.dispute_id,
            recipient=notification.recipient,
            resend=True,
        )
        _enqueue_send(copy.pk)
    logger.info(
        "email %s (%s) for order %s: resend as %s",
        notification.pk,
        notification.kind,
        notification.order_id,
        copy.pk,
    )
    return copy


def notification_send(*, notification_id: int) -> str:
    """Send one recorded message unless it has gone already; on failure, try again later.

    Raises the failure after planning the next attempt, so the task's own record keeps it too.
    """
    notification = Notification.objects.select_related("order").filter(pk=notification_id).first()
    if notification is None:
        return "no such email"
    if notification.status != NotificationStatus.QUEUED:
        return f"already {notification.status}"
    try:
        notification_message(notification).send()
    except Exception as exc:
        _send_failed(notification, exc)
        raise
    Notification.objects.filter(pk=notification.pk, status=NotificationStatus.QUEUED).update(
        status=NotificationStatus.SENT,
        sent_at=timezone.now(),
        attempts=F("attempts") + 1,
    )
    logger.info(
        "email %s (%s) for order %s sent",
        notification.pk,
        notification.kind,
        notification.order.reference,
    )
    return "sent"


def notifications_resume() -> list[int]:
    """Give a task again to every queued email that has none waiting or running; their ids.

    A queued email always has one (its task is written with it, and each failed attempt writes
    the next before it ends), unless writing the next attempt itself failed: then this is what
    keeps the email from never being sent. Run by every worker's housekeeping.
    """
    from shop.notifications.tasks import notification_send_task

    return tasks_resume(
        notification_send_task,
        key="notification_id",
        waiting=Notification.objects.filter(status=NotificationStatus.QUEUED),
        enqueue=_enqueue_send,
        label="email",
    )


def orders_link_send(*, email: str, attempt: int = 1) -> str:
    """Find my orders: email a 24-hour link to this address's orders, if it has any.

    Run by the worker, never in the request, so the answer to the request is the same whether
    the address bought here or not. A failed send is tried again a few times (the link is of
    use for a day only; the customer can also ask again).
    """
    if not orders_paid_with_email(email=email):
        return "no orders for that address"
    try:
        orders_link_message(email).send()
    except Exception:
        if attempt < ORDERS_LINK_ATTEMPTS:
            from shop.notifications.tasks import orders_link_send_task

            orders_link_send_task.using(
                run_after=timezone.now() + email_retry_delay(attempt)
            ).enqueue(email=email, attempt=attempt + 1)
        logger.warning("orders link: attempt %d failed", attempt)
        raise
    logger.info("orders link sent")
    return "sent"


def orders_link_request(*, email: str) -> None:
    """Enqueue the Find my orders email; the request that asks for it sends nothing itself."""
    from shop.notifications.tasks import orders_link_send_task

    orders_link_send_task.enqueue(email=email)


def email_retry_delay(attempt: int) -> timedelta:
    """The pause after failed attempt number `attempt` (1, 2, …): doubling, up to a cap."""
    first = settings.SHOP_EMAIL_RETRY_FIRST_SECONDS
    seconds = min(first * 2 ** min(attempt - 1, 30), settings.SHOP_EMAIL_RETRY_MAX_SECONDS)
    return timedelta(seconds=seconds)


def _queue(*, order: Order, kinds: Iterable[NotificationKind]) -> list[Notification]:
    records = []
    for kind in kinds:
        recipient = order.email if kind in TO_CUSTOMER else settings.SHOP_OWNER_EMAIL
        if recipient:
            records.append(Notification(order=order, kind=kind, recipient=recipient))
        else:
            logger.warning("order %s: no address for its %s email", order.reference, kind)
    from shop.notifications.tasks import notification_send_task

    with transaction.atomic(savepoint=False):
        created = Notification.objects.bulk_create(records)
        # Their tasks' rows in one statement, in the same transaction (see _enqueue_send).
        tasks_enqueue_many(
            notification_send_task, [{"notification_id": record.pk} for record in created]
        )
    return created


def _send_failed(notification: Notification, exc: Exception) -> None:
    now = timezone.now()
    attempt = notification.attempts + 1
    give_up = now - notification.created_at >= timedelta(hours=settings.SHOP_EMAIL_RETRY_HOURS)
    with transaction.atomic():
        updated = Notification.objects.filter(
            pk=notification.pk, status=NotificationStatus.QUEUED
        ).update(
            attempts=F("attempts") + 1,
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
            status=NotificationStatus.FAILED if give_up else NotificationStatus.QUEUED,
        )
        if updated and not give_up:
            _enqueue_send(notification.pk, run_after=now + email_retry_delay(attempt))
    if give_up:
        logger.error(
            "email %s (%s) for order %s failed for good after %d attempts: %s",
            notification.pk,
            notification.kind,
            notification.order.reference,
            attempt,
            type(exc).__name__,
        )
    else:
        logger.warning(
            "email %s (%s) for order %s: attempt %d failed (%s), trying again later",
            notification.pk,
            notification.kind,
            notification.order.reference,
            attempt,
            type(exc).__name__,
        )


def _enqueue_send(notification_id: int, *, run_after: datetime | None = None) -> None:
    # The task's row is written here, in the caller's transaction (the database backend does
    # not wait for a commit): it exists exactly when the record does.
    from shop.notifications.tasks import notification_send_task

    task = (
        notification_send_task.using(run_after=run_after) if run_after else notification_send_task
    )
    task.enqueue(notification_id=notification_id)
