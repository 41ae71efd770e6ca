"""Every model of the shop, for Django: each lives with its domain."""

from shop.catalogue.models import Product
from shop.orders.limits import MAX_AMOUNT, MAX_QUANTITY, MIN_CHARGE
from shop.orders.models import (
    Order,
    OrderLine,
    OrderStatus,
    OrderTransition,
    new_order_reference,
)
from shop.payments.models import Payment, WebhookDelivery, WebhookEvent
from shop.refunds.models import Dispute, Refund

__all__ = [
    "MAX_AMOUNT",
    "MAX_QUANTITY",
    "MIN_CHARGE",
    "Dispute",
    "Order",
    "OrderLine",
    "OrderStatus",
    "OrderTransition",
    "Payment",
    "Product",
    "Refund",
    "WebhookDelivery",
    "WebhookEvent",
    "new_order_reference",
]
