import secrets

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from shop.catalogue.models import Product
from shop.orders.limits import MAX_AMOUNT, MAX_QUANTITY, MIN_CHARGE


def new_order_reference() -> str:
    return "ord_" + secrets.token_hex(12)


def email_normalized(email: str | None) -> str:
    """An address as the shop stores and compares it: lower case, no surrounding space."""
    return (email or "").strip().lower()


class OrderStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PAID = "paid", "Paid"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired"
    REFUNDED = "refunded", "Refunded"


# The statuses of an order whose payment was received (a refunded order was paid first).
PAID_STATUSES = [OrderStatus.PAID, OrderStatus.REFUNDED]


class Order(models.Model):
    # The public reference: Stripe carries it as client_reference_id and metadata[order_id].
    reference = models.CharField(max_length=40, unique=True, default=new_order_reference)
    # Identifies the browser: a random value in its signed cookie (shop/customer.py).
    customer_key = models.CharField(max_length=64)
    status = models.CharField(
        max_length=16, choices=OrderStatus.choices, default=OrderStatus.PENDING
    )
    currency = models.CharField(max_length=3)
    amount_total = models.PositiveIntegerField(help_text="In cents.")
    # Fingerprint of products, quantities and prices: the same cart reuses its open checkout.
    cart_key = models.CharField(max_length=64)
    checkout_session_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    checkout_url = models.TextField(blank=True)
    checkout_expires_at = models.DateTimeField()
    # Set when the browser started another cart: this order's checkout is being closed.
    released_at = models.DateTimeField(null=True, blank=True)
    # Set once, at checkout: stock was held for its products of limited stock (its "hold"
    # stock movements say which). Leaving pending releases or sells exactly that.
    holds_stock = models.BooleanField(default=False)
    payment_intent_id = models.CharField(max_length=255, blank=True)
    # What has been given back (succeeded refunds, or the provider's refunded total if higher):
    # all of it makes the order refunded; less shows as "partially refunded".
    amount_refunded = models.PositiveIntegerField(default=0, help_text="In cents.")
    # A chargeback was opened on its payment (a flag beside the status, not a payment state).
    disputed = models.BooleanField(default=False)
    # The customer's address as the payment provider collected it (email_normalized), stored
    # when the order becomes paid: where confirmations go.
    email = models.EmailField(blank=True)
    needs_review = models.BooleanField(default=False)
    review_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=OrderStatus.values), name="order_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(amount_total__gte=MIN_CHARGE) & Q(amount_total__lte=MAX_AMOUNT),
                name="order_amount_in_stripe_range",
            ),
            models.CheckConstraint(
                condition=Q(amount_refunded__lte=F("amount_total")),
                name="order_refunds_within_amount",
            ),
            # Paid and refunded orders, and only they, have paid_at: My Orders relies on it.
            models.CheckConstraint(
                condition=Q(status__in=PAID_STATUSES, paid_at__isnull=False)
                | (~Q(status__in=PAID_STATUSES) & Q(paid_at__isnull=True)),
                name="order_paid_at_iff_paid",
            ),
            # One payable checkout per browser: a second concurrent insert fails here.
            models.UniqueConstraint(
                fields=["customer_key"],
                condition=Q(status=OrderStatus.PENDING, released_at__isnull=True),
                name="order_one_open_per_customer",
            ),
        ]
        indexes = [
            # My Orders: one browser's paid and refunded orders, newest first. Partial on the
            # very condition the query states (SQLite uses a partial index only then), so the
            # plan reads the browser's newest orders and nothing of other browsers'.
            models.Index(
                fields=["customer_key", "-paid_at", "-id"],
                name="order_history_idx",
                condition=Q(paid_at__isnull=False),
            ),
            # Checkout: the browser's pending orders (the open one and released ones).
            models.Index(
                fields=["customer_key"],
                name="order_customer_pending_idx",
                condition=Q(status="pending"),
            ),
            # My Orders of a browser that opened a Find my orders link also walks that
            # address's orders, newest first.
            models.Index(fields=["email", "-id"], name="order_email_history_idx"),
            models.Index(fields=["status", "created_at"], name="order_status_idx"),
            # The owner's overview: the orders paid in a window, by status then payment time.
            # Not led by paid_at, deliberately: an index ordered by payment time alone would
            # offer My Orders a plan that walks every browser's orders (see order_history).
            models.Index(
                fields=["status", "paid_at"],
                name="order_sales_idx",
                condition=Q(paid_at__isnull=False),
            ),
            # Plain, not partial: SQLite only uses a partial index it can prove from the query.
            models.Index(fields=["payment_intent_id"], name="order_intent_idx"),
            # The owner's overview and the admin's filter: the few orders flagged for review.
            models.Index(
                fields=["created_at", "id"],
                name="order_review_idx",
                condition=Q(needs_review=True),
            ),
        ]

    def __str__(self) -> str:
        return self.reference

    @property
    def partially_refunded(self) -> bool:
        return 0 < self.amount_refunded < self.amount_total


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    # Snapshot at purchase time: later price or name edits never change a placed order.
    product_name = models.CharField(max_length=100)
    unit_amount = models.PositiveIntegerField()
    quantity = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gte=1) & Q(quantity__lte=MAX_QUANTITY),
                name="order_line_quantity_in_range",
            ),
            models.CheckConstraint(
                condition=Q(unit_amount__gte=1), name="order_line_amount_positive"
            ),
            models.UniqueConstraint(fields=["order", "product"], name="order_line_product_once"),
        ]

    def __str__(self) -> str:
        return f"{self.product_name} × {self.quantity}"  # noqa: RUF001

    @property
    def line_total(self) -> int:
        return self.unit_amount * self.quantity


class OrderTransition(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="transitions")
    from_status = models.CharField(max_length=16, choices=OrderStatus.choices)
    to_status = models.CharField(max_length=16, choices=OrderStatus.choices)
    cause = models.CharField(max_length=40)
    event_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # The state machine has no cycles, so an order enters each status at most once:
            # a second "paid" transition is impossible even if application code slipped.
            models.UniqueConstraint(fields=["order", "to_status"], name="order_enters_status_once"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id}: {self.from_status} → {self.to_status} ({self.cause})"
