from django.db import models
from django.db.models import Q
from django.utils import timezone

from shop.orders.models import Order
from shop.refunds.models import Dispute, Refund


class NotificationKind(models.TextChoices):
    ORDER_CONFIRMATION = "order_confirmation", "Order confirmation"
    NEW_ORDER = "new_order", "New order (to the owner)"
    REFUND = "refund", "Refund confirmation"
    NEEDS_REVIEW = "needs_review", "Needs review (to the owner)"
    DISPUTE = "dispute", "Dispute opened (to the owner)"
    SOLD_OUT = "sold_out", "Paid after it sold out, refunded (to the owner)"


class NotificationStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class Notification(models.Model):
    """One email the shop owes someone about an order, and how sending it went.

    Created in the transaction of the change that causes it, together with the task that sends
    it; one per order and kind, except copies an owner sends again on purpose.
    """

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=32, choices=NotificationKind.choices)
    # What a refund or dispute message is about: one message each, not one per order.
    refund = models.ForeignKey(
        Refund, on_delete=models.CASCADE, related_name="notifications", null=True, blank=True
    )
    dispute = models.ForeignKey(
        Dispute, on_delete=models.CASCADE, related_name="notifications", null=True, blank=True
    )
    recipient = models.EmailField()
    status = models.CharField(
        max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.QUEUED
    )
    # A copy an owner asked for (admin: Resend): outside the one-per-order-and-kind rule.
    resend = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["order", "kind"],
                condition=Q(resend=False, refund__isnull=True, dispute__isnull=True),
                name="notification_once_per_order_kind",
            ),
            models.UniqueConstraint(
                fields=["refund", "kind"],
                condition=Q(resend=False, refund__isnull=False),
                name="notification_once_per_refund",
            ),
            models.UniqueConstraint(
                fields=["dispute", "kind"],
                condition=Q(resend=False, dispute__isnull=False),
                name="notification_once_per_dispute",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=NotificationKind.values), name="notification_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=NotificationStatus.values),
                name="notification_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status=NotificationStatus.SENT) | Q(sent_at__isnull=False),
                name="notification_sent_has_sent_at",
            ),
        ]
        indexes = [
            # Housekeeping looks for queued messages whose task went missing.
            models.Index(
                fields=["created_at"],
                name="notification_queued_idx",
                condition=Q(status=NotificationStatus.QUEUED),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for order {self.order_id}"
