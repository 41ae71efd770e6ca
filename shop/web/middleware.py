import functools
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

from shop.web.http import is_text_charset


class ContentSecurityPolicyMiddleware:
    """Allow only this site's own scripts, styles and images; forms may post here or to Stripe."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", policy(settings.CHECKOUT_ORIGIN))
        return response


@functools.cache
def policy(checkout_origin: str) -> str:
    # Chromium applies form-action to the redirect after a form post, so the checkout origin
    # (where Buy redirects to) must be listed.
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            f"form-action 'self' {checkout_origin}",
            "frame-ancestors 'none'",
        ]
    )


class RejectUndecodableCharsetMiddleware:
    """Answer 400 to a body in a charset that is not a text encoding, before anything parses it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_text_charset(request.META.get("CONTENT_TYPE", "")):
            return HttpResponseBadRequest("Unsupported charset.", content_type="text/plain")
        return self.get_response(request)
