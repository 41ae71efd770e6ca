from django.db import models
from django.db.models import Q
from django.utils import timezone

from shop.orders.limits import MAX_AMOUNT, MAX_QUANTITY


class Product(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=200, blank=True)
    unit_amount = models.PositiveIntegerField(help_text="Price in cents, e.g. 1250 for $12.50.")
    position = models.PositiveSmallIntegerField(default=0)
    active = models.BooleanField(default=True)
    stock = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=(
            "How many you have to sell in total, those already sold included: when more arrive, "
            "add them to this number. Empty for unlimited."
        ),
    )
    # Moved only by the stock services (shop/catalogue/stock.py), one conditional UPDATE at a
    # time, never from a form: a form holds values read minutes ago.
    held = models.PositiveIntegerField(
        default=0, editable=False, help_text="Held by open checkouts."
    )
    sold = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(unit_amount__gte=1) & Q(unit_amount__lte=MAX_AMOUNT),
                name="product_unit_amount_in_range",
            ),
            models.CheckConstraint(
                condition=Q(stock__isnull=True) | Q(stock__gte=0), name="product_stock_not_negative"
            ),
            models.CheckConstraint(condition=Q(held__gte=0), name="product_held_not_negative"),
            models.CheckConstraint(condition=Q(sold__gte=0), name="product_sold_not_negative"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def available(self) -> int | None:
        """Units a new checkout may hold; None for unlimited. Zero, not less, when the owner
        lowered the stock below what is sold and held."""
        if self.stock is None:
            return None
        return max(self.stock - self.sold - self.held, 0)


class StockMovementKind(models.TextChoices):
    HOLD = "hold", "Held by checkout"
    RELEASE = "release", "Hold released"
    SALE = "sale", "Sold (its hold became a sale)"
    SALE_UNHELD = "sale_unheld", "Sold (without a hold: taken from what was available)"


# The kinds that count a unit as sold.
SALE_KINDS = [StockMovementKind.SALE, StockMovementKind.SALE_UNHELD]


class StockMovement(models.Model):
    """One change of a product's held or sold units, and the order it was for.

    A product's counters are the sum of its movements: held = holds - releases - sales,
    sold = sales + unheld sales. Written in the transaction that changes the counters.
    """

    order = models.ForeignKey(
        "shop.Order", on_delete=models.CASCADE, related_name="stock_movements"
    )
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="stock_movements")
    kind = models.CharField(max_length=16, choices=StockMovementKind.choices)
    quantity = models.PositiveSmallIntegerField()
    cause = models.CharField(max_length=40)
    event_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=StockMovementKind.values), name="stock_movement_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(quantity__gte=1) & Q(quantity__lte=MAX_QUANTITY),
                name="stock_movement_quantity_in_range",
            ),
            # An order holds, releases and sells each product at most once, whatever path
            # (webhook, success page, reconcile, the clock) gets there, however often.
            models.UniqueConstraint(
                fields=["order", "product", "kind"], name="stock_movement_once_per_order"
            ),
            models.UniqueConstraint(
                fields=["order", "product"],
                condition=Q(kind__in=SALE_KINDS),
                name="stock_sold_once_per_order",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.quantity} × {self.product_id}"  # noqa: RUF001
