from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from shop.orders.models import Order


class RefundStatus(models.TextChoices):
    # Asked for by the shop and not yet confirmed, or reported pending by the provider.
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"


class RefundReason(models.TextChoices):
    # Stripe's list of reasons.
    REQUESTED_BY_CUSTOMER = "requested_by_customer", "Requested by customer"
    DUPLICATE = "duplicate", "Duplicate"
    FRAUDULENT = "fraudulent", "Fraudulent"


class RefundOrigin(models.TextChoices):
    SHOP = "shop", "Started in the shop"
    PROVIDER = "provider", "Started at the provider (dashboard)"


class Refund(models.Model):
    """Money given back for an order, whoever started it: one row per provider refund."""

    # Empty while the refund's payment is not known as one of our paid orders yet (a dashboard
    # refund whose event came before the payment's).
    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, related_name="refunds", null=True, blank=True
    )
    payment_intent_id = models.CharField(max_length=255)
    provider_refund_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    amount = models.PositiveIntegerField(help_text="In cents.")
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=32, choices=RefundReason.choices, blank=True)
    status = models.CharField(max_length=16, choices=RefundStatus.choices)
    origin = models.CharField(max_length=16, choices=RefundOrigin.choices)
    # Why the shop refunded, for people ("asked by the owner", "sold out").
    cause = models.CharField(max_length=100, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    failure_reason = models.CharField(max_length=100, blank=True)
    # The provider call (a background task): how often it was tried, and its last error.
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=1), name="refund_amount_positive"),
            models.CheckConstraint(
                condition=Q(status__in=RefundStatus.values), name="refund_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(origin__in=RefundOrigin.values), name="refund_origin_valid"
            ),
            # A payment that came after its stock was sold is given back once, however often
            # its event is delivered.
            models.UniqueConstraint(
                fields=["order"], condition=Q(cause="sold out"), name="refund_sold_out_once"
            ),
        ]
        indexes = [
            models.Index(fields=["payment_intent_id"], name="refund_intent_idx"),
            models.Index(fields=["created_at"], name="refund_created_idx"),
        ]

    def __str__(self) -> str:
        return self.provider_refund_id or f"refund {self.pk}"


class Dispute(models.Model):
    """A chargeback: the customer's bank is taking the payment back, unless evidence wins."""

    provider_dispute_id = models.CharField(max_length=255, unique=True)
    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, related_name="disputes", null=True, blank=True
    )
    payment_intent_id = models.CharField(max_length=255)
    amount = models.PositiveIntegerField(help_text="In cents.")
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=64, blank=True)
    # Stripe's status: warning_needs_response, needs_response, under_review, won, lost, …
    status = models.CharField(max_length=32)
    evidence_due_by = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["payment_intent_id"], name="dispute_intent_idx"),
            models.Index(fields=["created_at"], name="dispute_created_idx"),
        ]

    def __str__(self) -> str:
        return self.provider_dispute_id

    @property
    def outcome(self) -> str:
        """won, lost, or empty while the dispute is open."""
        return self.status if self.status in {"won", "lost"} else ""
