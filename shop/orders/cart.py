"""The cart: read from the checkout form, then priced from the database.

Only product ids and quantities come from the browser, never prices.
"""

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings
from django.http import QueryDict

from shop.catalogue.models import Product
from shop.catalogue.selectors import products_for_sale
from shop.errors import ShopError
from shop.orders.limits import MAX_AMOUNT, MAX_QUANTITY, MIN_CHARGE

FIELD_PREFIX = "quantity-"
_QUANTITY = re.compile(r"[0-9]{1,2}")


def cart_field_name(product_id: int) -> str:
    return f"{FIELD_PREFIX}{product_id}"


def cart_parse(data: QueryDict, *, product_ids: set[int]) -> dict[int, int]:
    """Map product id to quantity, or raise ShopError for anything a real form would not send."""
    # Exact field names only: "quantity-01" is not "quantity-1", and no id is parsed from input.
    fields = {cart_field_name(pk): pk for pk in product_ids}
    quantities: dict[int, int] = {}
    for name in data:
        if not name.startswith(FIELD_PREFIX):
            continue
        product_id = fields.get(name)
        if product_id is None:
            raise ShopError("Your cart has a product that is not for sale.")
        values = data.getlist(name)
        if len(values) != 1:
            raise ShopError("Each product can appear only once in the cart.")
        raw = values[0].strip()
        if raw == "":
            raw = "0"
        if not _QUANTITY.fullmatch(raw) or int(raw) > MAX_QUANTITY:
            raise ShopError(f"Quantities must be whole numbers from 0 to {MAX_QUANTITY}.")
        quantities[product_id] = int(raw)
    if not any(quantities.values()):
        raise ShopError("Choose at least one product.")
    return quantities


@dataclass(frozen=True)
class PricedLine:
    product: Product
    quantity: int

    @property
    def total(self) -> int:
        return self.product.unit_amount * self.quantity


@dataclass(frozen=True)
class PricedCart:
    lines: tuple[PricedLine, ...]
    currency: str

    @property
    def total(self) -> int:
        return sum(line.total for line in self.lines)

    @property
    def key(self) -> str:
        # Prices are part of the key: after a price change the same quantities are a new cart.
        parts = [self.currency] + [
            f"{line.product.pk}:{line.quantity}:{line.product.unit_amount}" for line in self.lines
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()


def cart_price(
    *, quantities: dict[int, int], products: Mapping[int, Product] | None = None
) -> PricedCart:
    """Price a cart from the database; the browser only ever says which product and how many.

    `products`: the products for sale, if the caller has just read them.
    """
    wanted = {pk: qty for pk, qty in quantities.items() if qty > 0}
    if not wanted:
        raise ShopError("Choose at least one product.")
    if products is None:
        products = {p.pk: p for p in products_for_sale().filter(pk__in=wanted)}
    if wanted.keys() - products.keys():
        raise ShopError("Your cart has a product that is not for sale.")
    cart = PricedCart(
        lines=tuple(PricedLine(products[pk], wanted[pk]) for pk in sorted(wanted)),
        currency=settings.SHOP_CURRENCY,
    )
    if cart.total > MAX_AMOUNT:
        raise ShopError("That order is larger than we can take in one payment.")
    if cart.total < MIN_CHARGE:
        raise ShopError("The smallest order we can take is $0.50.")
    return cart
