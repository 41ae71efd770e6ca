"""Limited stock: units held while a checkout is open, then given back or sold.

A product's `held` and `sold` change only here, each by one UPDATE that the database applies to
the row as it is when the statement runs (`held = held + q`), and a hold only where enough is
available (`WHERE stock - sold - held >= q`): two app servers can never hold the same unit. Rows
are changed in product id order, so two transactions never wait for each other in a circle.
Each change is recorded as a StockMovement of its order in the same transaction.

Callers decide when: the order state machine (shop/orders/services.py) calls these in the
transaction that moves the order's status, so each runs once per order.
"""

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F, Q

from shop.catalogue.models import Product, StockMovement, StockMovementKind
from shop.catalogue.selectors import products_cache_clear

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StockLine:
    product_id: int
    quantity: int
    # For a sale: this order's hold covers the line (a hold becomes a sale and cannot fail).
    held: bool = False


@dataclass(frozen=True)
class Shortage:
    product_id: int
    name: str
    wanted: int
    available: int


class OutOfStock(Exception):
    """Fewer units available than wanted. Raised before the caller's transaction commits:
    rolling it back undoes whatever was held or taken before."""

    def __init__(self, wanted: Mapping[int, int]) -> None:
        super().__init__(f"not enough stock for products {sorted(wanted)}")
        self.wanted = dict(wanted)


def stock_hold(*, order_id: int, lines: Iterable[StockLine], cause: str) -> None:
    """Hold every line's units for a new order, or raise OutOfStock."""
    lines = _in_lock_order(lines)
    for line in lines:
        if not _add_if_available(line, "held"):
            raise OutOfStock({line.product_id: line.quantity for line in lines})
    _record(order_id, lines, StockMovementKind.HOLD, cause=cause, event_id="")


def stock_release(*, order_id: int, cause: str, event_id: str = "") -> None:
    """Give back what the order holds: its checkout can no longer be paid."""
    lines = _in_lock_order(
        StockLine(product_id, quantity)
        for product_id, quantity in StockMovement.objects.filter(
            order_id=order_id, kind=StockMovementKind.HOLD
        ).values_list("product_id", "quantity")
    )
    for line in lines:
        Product.objects.filter(pk=line.product_id).update(held=F("held") - line.quantity)
    _record(order_id, lines, StockMovementKind.RELEASE, cause=cause, event_id=event_id)


def stock_sell(
    *, order_id: int, lines: Iterable[StockLine], cause: str, event_id: str = ""
) -> None:
    """Count the order's units as sold: a held line turns its hold into a sale; a line without
    a hold (released before the payment came) takes units if available, else OutOfStock."""
    lines = _in_lock_order(lines)
    for line in lines:
        if line.held:
            Product.objects.filter(pk=line.product_id).update(
                held=F("held") - line.quantity, sold=F("sold") + line.quantity
            )
        elif not _add_if_available(line, "sold"):
            raise OutOfStock({line.product_id: line.quantity for line in lines if not line.held})
    for kind, chosen in (
        (StockMovementKind.SALE, [line for line in lines if line.held]),
        (StockMovementKind.SALE_UNHELD, [line for line in lines if not line.held]),
    ):
        _record(order_id, chosen, kind, cause=cause, event_id=event_id)


def stock_shortages(
    wanted: Mapping[int, int], *, held_by_asker: Mapping[int, int] | None = None
) -> list[Shortage]:
    """The products of `wanted` that have fewer units available than wanted, as they are now;
    units the asker holds itself (`held_by_asker`) count as available to it."""
    held_by_asker = held_by_asker or {}
    shortages = []
    for product in Product.objects.filter(pk__in=wanted).order_by("position", "id"):
        if product.available is None:
            continue
        available = product.available + held_by_asker.get(product.pk, 0)
        if available < wanted[product.pk]:
            shortages.append(Shortage(product.pk, product.name, wanted[product.pk], available))
    return shortages


def _in_lock_order(lines: Iterable[StockLine]) -> list[StockLine]:
    return sorted(lines, key=lambda line: line.product_id)


def _add_if_available(line: StockLine, counter: str) -> bool:
    # A product made unlimited since the caller read it: counted all the same, so the counts
    # stay the sum of the movements (and right if it is limited again).
    enough = Q(stock__isnull=True) | Q(stock__gte=F("sold") + F("held") + line.quantity)
    return bool(
        Product.objects.filter(enough, pk=line.product_id).update(
            **{counter: F(counter) + line.quantity}
        )
    )


def _record(
    order_id: int, lines: list[StockLine], kind: StockMovementKind, *, cause: str, event_id: str
) -> None:
    if not lines:
        return
    StockMovement.objects.bulk_create(
        StockMovement(
            order_id=order_id,
            product_id=line.product_id,
            kind=kind,
            quantity=line.quantity,
            cause=cause,
            event_id=event_id,
        )
        for line in lines
    )
    logger.info(
        "order %s stock %s (%s): %s",
        order_id,
        kind,
        cause,
        ", ".join(f"{line.quantity} of product {line.product_id}" for line in lines),
    )
    # The storefront shows what is available: its cached list is out of date once this commits.
    transaction.on_commit(products_cache_clear)
