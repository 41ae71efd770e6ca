"""Which browser is this? A random key in a signed cookie, given at the browser's first checkout.

The key says whose orders My Orders shows and which open checkout a browser may reuse. It is a
cookie the shop verifies by itself (HMAC with SECRET_KEY) rather than a database session: a
page then costs no session read and a new customer no session row. Only the key is stored in
the cookie, so there is nothing to revoke beyond what a session id would have exposed, and the
Django session stays for the admin alone.
"""

import secrets

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse

COOKIE_NAME = "shop_customer"
_SALT = "shop.customer"


def customer_key_read(request: HttpRequest) -> str | None:
    """The browser's key, or None for a browser that has never checked out here."""
    key = request.get_signed_cookie(COOKIE_NAME, default=None, salt=_SALT)
    return str(key) if key else None


def customer_key_new() -> str:
    return secrets.token_urlsafe(24)


def customer_cookie_set(request: HttpRequest, response: HttpResponse, key: str) -> None:
    """Give the browser its key, unless its signed cookie already holds it."""
    if request.get_signed_cookie(COOKIE_NAME, default=None, salt=_SALT) == key:
        return
    response.set_cookie(
        COOKIE_NAME,
        customer_cookie_value(key),
        max_age=settings.CUSTOMER_COOKIE_AGE,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )


def customer_cookie_value(key: str) -> str:
    """The cookie's value for `key`, as HttpResponse.set_signed_cookie would sign it."""
    return signing.get_cookie_signer(salt=COOKIE_NAME + _SALT).sign(key)


# Addresses whose orders this browser also shows: set when it opens a Find my orders link, which
# proves it reads that address. Signed like the key; a browser that never opened one has no such
# cookie, and its pages cost what they always did.
EMAILS_COOKIE_NAME = "shop_orders_for"
_EMAILS_SALT = "shop.customer.emails"
MAX_LINKED_EMAILS = 5


def customer_emails_read(request: HttpRequest) -> tuple[str, ...]:
    """The addresses linked to this browser; () for nearly every browser (no cookie)."""
    value = request.COOKIES.get(EMAILS_COOKIE_NAME)
    if not value:
        return ()
    try:
        emails = signing.loads(value, salt=_EMAILS_SALT)
    except signing.BadSignature:
        return ()
    if not isinstance(emails, list):
        return ()
    return tuple(e for e in emails[:MAX_LINKED_EMAILS] if isinstance(e, str) and e)


def customer_email_link(request: HttpRequest, response: HttpResponse, email: str) -> None:
    """Link `email` to this browser (its key, if any, stays as it is): its orders join My Orders."""
    emails = [email, *(e for e in customer_emails_read(request) if e != email)]
    response.set_cookie(
        EMAILS_COOKIE_NAME,
        signing.dumps(emails[:MAX_LINKED_EMAILS], salt=_EMAILS_SALT, compress=True),
        max_age=settings.SESSION_COOKIE_AGE,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )
