"""Reading orders for the pages that show them."""

from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import Prefetch, Q

from shop.orders.links import order_link_valid
from shop.orders.models import Order, OrderLine, OrderStatus

ORDERS_PER_PAGE = 10
HISTORY_STATUSES = (OrderStatus.PAID, OrderStatus.REFUNDED)


@dataclass(frozen=True)
class OrderPage:
    # (id, reference, status) of each order shown, newest first: all a cached rendering of the
    # page needs to know, since an order's lines and amounts never change after checkout.
    shown: list[tuple[int, str, str]]
    next_cursor: str | None


def orders_for_customer(
    *, customer_key: str | None, before: str | None = None, emails: Sequence[str] = ()
) -> OrderPage:
    """A page of this browser's paid and refunded orders, newest first.

    Keyset paging on the primary key (ids grow with creation time), so a page costs the same
    whether the history holds ten orders or ten thousand. `emails`: addresses this browser has
    proven it reads (Find my orders); their orders are this browser's too.
    """
    if not customer_key and not emails:
        return OrderPage([], None)
    orders = Order.objects.filter(_whose(customer_key, emails), status__in=HISTORY_STATUSES)
    if before and before.isascii() and before.isdigit() and len(before) < 19:
        orders = orders.filter(pk__lt=int(before))
    shown = list(
        orders.order_by("-id").values_list("id", "reference", "status")[: ORDERS_PER_PAGE + 1]
    )
    if len(shown) <= ORDERS_PER_PAGE:
        return OrderPage(shown, None)
    shown = shown[:ORDERS_PER_PAGE]
    return OrderPage(shown, str(shown[-1][0]))


def _whose(customer_key: str | None, emails: Sequence[str]) -> Q:
    # Without linked addresses (nearly every browser) exactly the query it always was.
    if not emails:
        return Q(customer_key=customer_key)
    linked = Q(email__in=list(emails))
    return Q(customer_key=customer_key) | linked if customer_key else linked


def orders_paid_with_email(*, email: str) -> bool:
    """Whether any paid (or since refunded) order was bought with this address."""
    return Order.objects.filter(email=email, status__in=HISTORY_STATUSES).exists()


def orders_with_lines(page: OrderPage) -> list[Order]:
    """The orders of a page with their lines, in the page's order, for rendering it."""
    orders = (
        Order.objects.filter(pk__in=[pk for pk, _, _ in page.shown])
        .order_by("-id")
        .only("reference", "status", "amount_total", "currency", "created_at", "paid_at")
        .prefetch_related(
            Prefetch(
                "lines",
                queryset=OrderLine.objects.only(
                    "order_id", "product_name", "unit_amount", "quantity"
                ),
            )
        )
    )
    return list(orders)


def order_for_link(*, reference: str, token: str) -> Order | None:
    """The order an order link shows, with its lines; None for a link that is not genuine."""
    if not order_link_valid(reference=reference, token=token):
        return None
    return (
        Order.objects.filter(reference=reference)
        .only("reference", "status", "amount_total", "currency", "created_at", "paid_at")
        .prefetch_related("lines")
        .first()
    )
