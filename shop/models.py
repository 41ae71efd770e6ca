"""Every model of the shop, for Django: each lives with its domain."""

from shop.background.models import Schedule
from shop.catalogue.models import Product, StockMovement, StockMovementKind
from shop.notifications.models import Notification, NotificationKind, NotificationStatus
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
    "Notification",
    "NotificationKind",
    "NotificationStatus",
    "Order",
    "OrderLine",
    "OrderStatus",
    "OrderTransition",
    "Payment",
    "Product",
    "Refund",
    "Schedule",
    "StockMovement",
    "StockMovementKind",
    "WebhookDelivery",
    "WebhookEvent",
    "new_order_reference",
]
