"""Error pages that say what to do next, and never show a trace, a setting or a key."""

from django.http import HttpRequest, HttpResponse
from django.template import loader

PAGES = {
    400: ("Something in that request was not right", "Go back to the shop and try again."),
    403: (
        "That request was refused",
        "If you were buying, reload the shop page and press Buy again. Nothing was charged.",
    ),
    404: ("We could not find that page", "The shop is one click away."),
    429: (
        "Too many attempts",
        "You tried that a lot in a short time. Wait a minute, then try again. Nothing was charged.",
    ),
    500: (
        "Something went wrong on our side",
        "Nothing was charged twice. Please try again in a minute; if you paid, your order is safe "
        "and will appear under My Orders.",
    ),
}


def error_page(request: HttpRequest, status: int) -> HttpResponse:
    title, advice = PAGES[status]
    # Rendered without a RequestContext so a broken context processor cannot break the page.
    body = loader.render_to_string(
        "shop/error.html", {"status": status, "title": title, "advice": advice}
    )
    return HttpResponse(body, status=status)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_page(request, 400)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_page(request, 403)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_page(request, 404)


def server_error(request: HttpRequest) -> HttpResponse:
    return error_page(request, 500)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return error_page(request, 403)


def rate_limited(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    response = error_page(request, 429)
    response["Retry-After"] = "60"
    return response


def login_locked_out(
    request: HttpRequest, credentials: object = None, **kwargs: object
) -> HttpResponse:
    """django-axes: too many wrong admin passwords from this address or for this username."""
    response = error_page(request, 429)
    response["Retry-After"] = "3600"
    return response
