"""Small HTTP helpers shared by views and rate limits."""

import codecs
import ipaddress
from collections.abc import Callable
from functools import lru_cache, wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseRedirectBase
from django.utils.http import parse_header_parameters

from shop.web.customer import customer_key_read

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
    return _is_text_charset(content_type)


@lru_cache(maxsize=64)
def _is_text_charset(content_type: str) -> bool:
    # Read as Django reads it (HttpRequest._set_content_type_params), once per distinct header:
    # a webhook's "application/json; charset=utf-8" is the same on every delivery.
    _, params = parse_header_parameters(content_type)
    charset = params.get("charset")
    if not charset:
        return True
    try:
        return codecs.lookup(charset)._is_text_encoding
    except LookupError:
        return True


def axes_client_ip(request: HttpRequest) -> str:
    """django-axes counts failed admin logins per address: the same address as everywhere."""
    return client_ip(request)


def customer_browser(group: str, request: HttpRequest) -> str:
    """Rate-limit key for "this browser": its signed customer cookie, which a client cannot mint
    for itself (a CSRF cookie it can). Used with `per_customer_browser` rates only."""
    return customer_key_read(request) or ""


def per_customer_browser(setting: str) -> Callable[[str, HttpRequest], str | None]:
    """A rate for browsers that hold a customer cookie; none for the others (a browser that
    never bought here), which the per-address limit bounds instead."""

    def rate(group: str, request: HttpRequest) -> str | None:
        return str(getattr(settings, setting)) if customer_key_read(request) else None

    return rate


class HttpResponseSeeOther(HttpResponseRedirectBase):
    status_code = 303


def limit_body(max_bytes: int) -> Callable[..., Any]:
    """Refuse oversized bodies from the Content-Length header, before anything parses them."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return HttpResponse("Bad Content-Length.", status=400, content_type="text/plain")
            if length > max_bytes:
                return HttpResponse(
                    "Request body too large.", status=413, content_type="text/plain"
                )
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
