"""Reading what pages show."""

from dataclasses import dataclass

from django.db.models import Prefetch, QuerySet

from shop.models import Order, OrderLine, OrderStatus, Product

ORDERS_PER_PAGE = 10
HISTORY_STATUSES = (OrderStatus.PAID, OrderStatus.REFUNDED)


def products_for_sale() -> QuerySet[Product]:
    return Product.objects.filter(active=True)


@dataclass(frozen=True)
class OrderPage:
    orders: list[Order]
    next_cursor: str | None


def orders_for_customer(*, customer_key: str | None, before: str | None = None) -> OrderPage:
    """A page of this browser's paid and refunded orders, newest first.

    Keyset paging on the primary key (ids grow with creation time), so a page costs the same
    whether the history holds ten orders or ten thousand.
    """
    if not customer_key:
        return OrderPage([], None)
    orders = Order.objects.filter(customer_key=customer_key, status__in=HISTORY_STATUSES)
    if before and before.isascii() and before.isdigit() and len(before) < 19:
        orders = orders.filter(pk__lt=int(before))
    page = list(
        orders.order_by("-id")
        .only("reference", "status", "amount_total", "currency", "created_at", "paid_at")
        .prefetch_related(
            Prefetch(
                "lines",
                queryset=OrderLine.objects.only(
                    "order_id", "product_name", "unit_amount", "quantity"
                ),
            )
        )[: ORDERS_PER_PAGE + 1]
    )
    if len(page) <= ORDERS_PER_PAGE:
        return OrderPage(page, None)
    page = page[:ORDERS_PER_PAGE]
    return OrderPage(page, str(page[-1].pk))
