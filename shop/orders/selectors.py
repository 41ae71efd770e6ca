"""Reading orders for the pages that show them."""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from django.db.models import Prefetch, Q, QuerySet

from shop.compiled import CompiledQuery
from shop.orders.links import order_link_valid
from shop.orders.models import Order, OrderLine

ORDERS_PER_PAGE = 10
# What a customer's pages show of an order (with its lines).
SHOWN_FIELDS = (
    "reference",
    "status",
    "amount_total",
    "amount_refunded",
    "currency",
    "created_at",
    "paid_at",
)


@dataclass(frozen=True)
class OrderPage:
    """A page of My Orders: what it shows as one key, and the orders to render it with.

    `orders` is made only when the page's markup is not cached under `key`, and read then.
    """

    key: str
    ids: tuple[int, ...]
    next_cursor: str | None
    paged: bool

    @cached_property
    def orders(self) -> QuerySet[Order]:
        return _with_lines(list(self.ids))


def orders_for_customer(
    *, customer_key: str | None, before: str | None = None, emails: Sequence[str] = ()
) -> OrderPage:
    """A page of this browser's paid and refunded orders, newest first.

    Keyset paging on (paid_at, id) through an index that matches the query, so a page costs
    the same whether the browser's history holds ten orders or ten thousand, and whatever other
    browsers bought since. `before`: the id of the last order of the previous page. `emails`:
    addresses this browser has proven it reads (Find my orders); their orders are this
    browser's too.
    """
    paged = bool(before)
    if not customer_key and not emails:
        return OrderPage(_page_key([], None, paged), (), None, paged)
    if customer_key and not emails and not before:
        rows = FIRST_PAGE.rows(customer_key=customer_key)
    else:
        history = order_history(customer_key=customer_key, emails=emails)
        if before:
            anchor = _anchor(history, before)
            if anchor is None:
                return OrderPage(_page_key([], None, paged), (), None, paged)
            # A range on the index (paid_at <= t), then the few rows of that very instant.
            history = history.filter(paid_at__lte=anchor).exclude(
                paid_at=anchor, pk__gte=int(before)
            )
        rows = list(history.values_list(*PAGE_COLUMNS)[: ORDERS_PER_PAGE + 1])
    next_cursor = str(rows[ORDERS_PER_PAGE - 1][0]) if len(rows) > ORDERS_PER_PAGE else None
    shown = rows[:ORDERS_PER_PAGE]
    return OrderPage(
        _page_key(shown, next_cursor, paged),
        tuple(row[0] for row in shown),
        next_cursor,
        paged,
    )


# What the page key and the cursor need of each order shown (plain values, no conversion).
PAGE_COLUMNS = ("id", "reference", "status", "amount_refunded")


# The first page of a browser's history: the query of every returning storefront, compiled
# once per process (building and compiling it cost several times what running it does).
FIRST_PAGE = CompiledQuery(
    lambda customer_key: order_history(customer_key=customer_key).values_list(*PAGE_COLUMNS)[
        : ORDERS_PER_PAGE + 1
    ],
    "customer_key",
)


def _anchor(history: QuerySet[Order], before: str) -> datetime | None:
    """When the order a page continues after was paid; None for no such order of this
    browser (a cursor from elsewhere shows nothing)."""
    if not (before.isascii() and before.isdigit() and len(before) < 19):
        return None
    return history.filter(pk=int(before)).values_list("paid_at", flat=True).first()


def order_history(*, customer_key: str | None, emails: Sequence[str] = ()) -> QuerySet[Order]:
    """A browser's paid and refunded orders, newest first: the query `order_history_idx` is for.

    `paid_at IS NOT NULL` rather than `status IN (paid, refunded)` (the same orders, a database
    constraint says so): SQLite uses a partial index only for the very condition it names. And
    in the index's order, (paid_at, id), which no other index gives: ordered by id alone,
    PostgreSQL may take a browser with a long, old history for one whose orders are spread over
    every id, and walk the primary key backwards past every newer order of every other browser.
    """
    return Order.objects.filter(_whose(customer_key, emails), paid_at__isnull=False).order_by(
        "-paid_at", "-id"
    )


def _whose(customer_key: str | None, emails: Sequence[str]) -> Q:
    # Without linked addresses (nearly every browser) exactly the query it always was.
    if not emails:
        return Q(customer_key=customer_key)
    linked = Q(email__in=list(emails))
    return Q(customer_key=customer_key) | linked if customer_key else linked


def orders_paid_with_email(*, email: str) -> bool:
    """Whether any paid (or since refunded) order was bought with this address."""
    return Order.objects.filter(email=email, paid_at__isnull=False).exists()


def _page_key(shown: list[Any], next_cursor: str | None, paged: bool) -> str:
    # An order's lines and total never change after checkout, only its status and refunded
    # amount: with the ids and references they say everything the page shows. References are
    # random, so a key never outlives its order, even in a database whose ids start again.
    return hashlib.sha256(repr((shown, next_cursor, paged)).encode()).hexdigest()


def _with_lines(ids: list[int]) -> QuerySet[Order]:
    return (
        Order.objects.filter(pk__in=ids)
        .order_by("-paid_at", "-id")
        .only(*SHOWN_FIELDS)
        .prefetch_related(
            Prefetch(
                "lines",
                queryset=OrderLine.objects.only(
                    "order_id", "product_name", "unit_amount", "quantity"
                ),
            )
        )
    )


def order_for_browser_session(*, customer_key: str, session_id: str) -> Order | None:
    """This browser's order paid through `session_id`, with its lines; None for anyone else's."""
    return (
        Order.objects.filter(checkout_session_id=session_id, customer_key=customer_key)
        .prefetch_related("lines")
        .first()
    )


def order_for_link(*, reference: str, token: str) -> Order | None:
    """The order an order link shows, with its lines; None for a link that is not genuine."""
    if not order_link_valid(reference=reference, token=token):
        return None
    return (
        Order.objects.filter(reference=reference)
        .only(*SHOWN_FIELDS)
        .prefetch_related("lines")
        .first()
    )
