from django.db import models
from django.db.models import Q
from django.utils import timezone

from shop.results import Kind

KIND_CHOICES = [(kind.value, kind.value.replace("_", " ")) for kind in Kind]


class WebhookEvent(models.Model):
    """One Stripe event, processed at most once whatever the number of deliveries."""

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    # The outcome of the attempt that settled it (or of the last failed one), then its words.
    kind = models.CharField(max_length=16, choices=KIND_CHOICES, blank=True)
    outcome = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(
                fields=["received_at"],
                name="webhook_event_unprocessed_idx",
                condition=Q(processed_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} ({self.type})"


class WebhookDelivery(models.Model):
    """Every HTTP delivery to the webhook endpoint, kept before it is processed."""

    received_at = models.DateTimeField(default=timezone.now)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    headers = models.JSONField(default=dict)
    # Whole for a verified delivery; the first bytes only for a refused one.
    body = models.TextField()
    body_size = models.PositiveIntegerField(default=0)
    signature_valid = models.BooleanField(default=False)
    event_id = models.CharField(max_length=255, blank=True)
    event_type = models.CharField(max_length=100, blank=True)
    # Empty while its event is being processed (or waits for the worker).
    kind = models.CharField(max_length=16, choices=KIND_CHOICES, blank=True)
    outcome = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["event_id"], name="webhook_delivery_event_idx"),
            models.Index(fields=["received_at"], name="webhook_delivery_received_idx"),
            # Housekeeping's look for queued deliveries without a task: few rows, read often.
            models.Index(
                fields=["received_at"],
                name="webhook_delivery_waiting_idx",
                condition=Q(signature_valid=True, kind__in=["", "failed"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.received_at:%Y-%m-%d %H:%M:%S} {self.event_type or 'unverified'}"

    @property
    def processed(self) -> bool:
        return bool(self.kind) and Kind(self.kind).settled


class Payment(models.Model):
    """What the provider has told us about one payment (a payment intent), whichever of its
    events came first.

    It is also where the paths that touch one payment meet: the payment and its refunds are
    applied in transactions that each lock this row first, so on PostgreSQL the second always
    sees what the first committed (a refund can arrive at the same instant as its payment).
    """

    payment_intent_id = models.CharField(max_length=255, unique=True)
    # The provider's refunded total for this payment, and the event that reported it; kept even
    # before the order it belongs to is known to be paid.
    amount_refunded = models.PositiveIntegerField(default=0)
    refund_event_id = models.CharField(max_length=255, blank=True)
    # Some refund of it is recorded (a Refund row): an order that becomes paid looks for them
    # only then, so the usual payment costs no lookup.
    has_refunds = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.payment_intent_id
