from django.db import models
from django.db.models import Q

from shop.orders.limits import MAX_AMOUNT


class Product(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=200, blank=True)
    unit_amount = models.PositiveIntegerField(help_text="Price in cents, e.g. 1250 for $12.50.")
    position = models.PositiveSmallIntegerField(default=0)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(unit_amount__gte=1) & Q(unit_amount__lte=MAX_AMOUNT),
                name="product_unit_amount_in_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name
