"""Signed links that show orders to whoever holds them: no account, no password.

An order link (in every confirmation) names the order and a signature of its reference made
with the secret key and a salt of its own, so it can be neither guessed nor turned into a link
to another order; checking one reads nothing from the database. An orders link (Find my orders)
carries an email address, signed and timestamped: it proves its holder reads that address, for
24 hours.
"""

from datetime import timedelta

from django.core import signing

_ORDER_LINK_SALT = "shop.orders.order-link"
_ORDERS_LINK_SALT = "shop.orders.orders-link"
ORDERS_LINK_LIFETIME = timedelta(hours=24)


def order_link_token(*, reference: str) -> str:
    return signing.Signer(salt=_ORDER_LINK_SALT).signature(reference)


def order_link_valid(*, reference: str, token: str) -> bool:
    """Whether `token` was made for this reference (by the current key or a fallback key)."""
    try:
        return signing.Signer(salt=_ORDER_LINK_SALT).unsign(f"{reference}:{token}") == reference
    except signing.BadSignature:
        return False


def orders_link_token(*, email: str) -> str:
    return signing.dumps(email, salt=_ORDERS_LINK_SALT)


def orders_link_email(*, token: str) -> str | None:
    """The address an orders link was made for; None if altered or older than 24 hours."""
    try:
        email = signing.loads(token, salt=_ORDERS_LINK_SALT, max_age=ORDERS_LINK_LIFETIME)
    except signing.BadSignature:  # SignatureExpired is one
        return None
    return email if isinstance(email, str) and email else None
