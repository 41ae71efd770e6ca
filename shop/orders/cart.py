"""Reading a cart from the checkout form. Only quantities come from the browser, never prices."""

import re

from django.http import QueryDict

from shop.errors import ShopError
from shop.orders.limits import MAX_QUANTITY

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
