"""Links that show an order to whoever holds them, as an emailed confirmation carries.

A link names the order and a signature of its reference made with the secret key and a salt of
its own, so it can be neither guessed nor turned into a link to another order; checking one
reads nothing from the database.
"""

from django.core import signing

_ORDER_LINK_SALT = "shop.orders.order-link"


def order_link_token(*, reference: str) -> str:
    return signing.Signer(salt=_ORDER_LINK_SALT).signature(reference)


def order_link_valid(*, reference: str, token: str) -> bool:
    """Whether `token` was made for this reference (by the current key or a fallback key)."""
    try:
        return signing.Signer(salt=_ORDER_LINK_SALT).unsign(f"{reference}:{token}") == reference
    except signing.BadSignature:
        return False
