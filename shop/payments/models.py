from django.db import models
from django.db.models import Q
from django.utils import timezone


class WebhookEvent(models.Model):
    """One Stripe event, processed at most once whatever the number of deliveries."""

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # For charge.refunded: the refund may arrive before the payment it undoes (see orders.py).
    payment_intent_id = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["payment_intent_id"], name="webhook_event_intent_plain_idx"),
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
    body = models.TextField()
    signature_valid = models.BooleanField(default=False)
    event_id = models.CharField(max_length=255, blank=True)
    event_type = models.CharField(max_length=100, blank=True)
    processed = models.BooleanField(default=False)
    outcome = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["event_id"], name="webhook_delivery_event_idx"),
            models.Index(fields=["received_at"], name="webhook_delivery_received_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.received_at:%Y-%m-%d %H:%M:%S} {self.event_type or 'unverified'}"
