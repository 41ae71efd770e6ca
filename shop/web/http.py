"""Small HTTP helpers shared by views and rate limits."""

import codecs
import ipaddress
from email.message import Message

from django.conf import settings
from django.http import HttpRequest

UNKNOWN_IP = "0.0.0.0"  # noqa: S104 - a placeholder value, never bound to


def client_ip(request: HttpRequest) -> str:
    """The customer's address: REMOTE_ADDR, or the header a trusted proxy sets (see settings)."""
    value = request.META.get(settings.SHOP_CLIENT_IP_META_KEY) or request.META.get("REMOTE_ADDR")
    # X-Forwarded-For style lists: the trusted proxy appends the address it saw, last.
    candidate = (value or "").split(",")[-1].strip()
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return UNKNOWN_IP


def is_text_charset(content_type: str) -> bool:
    """False for a Content-Type whose charset is a codec but not a text encoding (rot13, hex,
    base64): Django would fail with LookupError. Unknown names are fine, Django ignores them."""
    if "charset" not in content_type.lower():
        return True
    message = Message()
    message["Content-Type"] = content_type
    charset = message.get_param("charset")
    if not charset or not isinstance(charset, str):
        return True
    try:
        return codecs.lookup(charset)._is_text_encoding
    except LookupError:
        return True
