"""Every model of the shop, for Django: each lives with its domain."""

from shop.catalogue.models import Product, StockMovement, StockMovementKind
from shop.orders.limits import MAX_AMOUNT, MAX_QUANTITY, MIN_CHARGE
from shop.orders.models import (
    Order,
    OrderLine,
    OrderStatus,
    OrderTransition,
    new_order_reference,
)
from shop.payments.models import Payment, WebhookDelivery, WebhookEvent

__all__ = [
    "MAX_AMOUNT",
    "MAX_QUANTITY",
    "MIN_CHARGE",
    "Order",
    "OrderLine",
    "OrderStatus",
    "OrderTransition",
    "Payment",
    "Product",
    "StockMovement",
    "StockMovementKind",
    "WebhookDelivery",
    "WebhookEvent",
    "new_order_reference",
]
