"""HTTP in, HTTP out: every rule lives in services, selectors and the cart."""

import re
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.request import HttpHeaders
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_ratelimit.decorators import ratelimit

from shop.background.health import WorkerState, worker_health_public
from shop.catalogue.selectors import catalogue_for_storefront, products_for_sale_list
from shop.errors import ShopError
from shop.notifications.services import orders_link_request
from shop.orders.cart import cart_field_name, cart_parse, cart_price
from shop.orders.checkout import checkout_confirm, checkout_pay_on_our_page, checkout_start
from shop.orders.links import orders_link_email
from shop.orders.models import OrderStatus, email_normalized
from shop.orders.selectors import order_for_browser_session, order_for_link, orders_for_customer
from shop.payments import demo_mode
from shop.payments.webhooks import KEPT_HEADERS, webhook_receive
from shop.results import Kind
from shop.web.customer import (
    customer_cookie_set,
    customer_email_link,
    customer_emails_read,
    customer_key_new,
    customer_key_read,
)
from shop.web.forms import EmailForm
from shop.web.http import (
    HttpResponseSeeOther,
    client_ip,
    customer_browser,
    limit_body,
    per_customer_browser,
)

SESSION_ID = re.compile(r"cs_[A-Za-z0-9_]{1,250}")
CHECKOUT_MAX_BYTES = 16 * 1024
# What Stripe should do: 2xx settles a delivery; 400 says do not trust it; 500 asks for a retry.
WEBHOOK_STATUS = {
    Kind.APPLIED: 200,
    Kind.NO_CHANGE: 200,
    Kind.DUPLICATE: 200,
    Kind.IGNORED: 200,
    Kind.FLAGGED: 200,
    Kind.REFUSED: 400,
    Kind.FAILED: 500,
    # Accepted: kept, and the worker applies it (SHOP_WEBHOOK_PROCESSING=worker).
    Kind.QUEUED: 202,
}
NOTICES = {
    "cancelled": "Checkout cancelled. Nothing was charged; your cart is below.",
    "unknown-session": "We could not find that checkout in this browser. Nothing was changed.",
    "orders-found": "Orders bought with your email address are now listed under My Orders in "
    "this browser.",
}
FIND_ORDERS_MAX_BYTES = 4 * 1024


@require_GET
def storefront(request: HttpRequest) -> HttpResponse:
    return _storefront(request, notice=NOTICES.get(request.GET.get("notice", "")))


@require_POST
@limit_body(CHECKOUT_MAX_BYTES)
@ratelimit(
    group="checkout-ip", key="ip", rate=lambda g, r: settings.CHECKOUT_RATE_PER_IP, block=True
)
@ratelimit(
    group="checkout-browser",
    key=customer_browser,
    rate=per_customer_browser("CHECKOUT_RATE_PER_BROWSER"),
    block=True,
)
def checkout(request: HttpRequest) -> HttpResponse:
    key = None
    response: HttpResponse
    try:
        products = {p.pk: p for p in products_for_sale_list()}
        quantities = cart_parse(request.POST, product_ids=set(products))
        cart = cart_price(quantities=quantities, products=products)
        # The browser gets its identity only once it has a valid cart: bad input stores nothing.
        key = customer_key_read(request) or customer_key_new()
        url = checkout_start(
            customer_key=key,
            cart=cart,
            success_url=request.build_absolute_uri(reverse("shop:checkout_success"))
            + "?session_id={CHECKOUT_SESSION_ID}",
            cancel_url=request.build_absolute_uri(reverse("shop:storefront")) + "?notice=cancelled",
        )
        response = HttpResponseSeeOther(url)
    except ShopError as exc:
        response = _storefront(request, error=exc.message, status=exc.status, posted=request.POST)
    if key is not None:
        # Also after a failure past this point: an order may already carry the key.
        customer_cookie_set(request, response, key)
    return response


@require_GET
@never_cache
@ratelimit(group="success-ip", key="ip", rate=lambda g, r: settings.SUCCESS_RATE_PER_IP, block=True)
@ratelimit(
    group="success-browser",
    key=customer_browser,
    rate=per_customer_browser("SUCCESS_RATE_PER_BROWSER"),
    block=True,
)
def checkout_success(request: HttpRequest) -> HttpResponse:
    session_id = request.GET.get("session_id", "")
    customer_key = customer_key_read(request)
    order = None
    if customer_key and SESSION_ID.fullmatch(session_id):
        order = checkout_confirm(customer_key=customer_key, session_id=session_id)
    if order is None:
        return HttpResponseSeeOther(reverse("shop:storefront") + "?notice=unknown-session")
    return render(request, "shop/success.html", {"order": order, "lines": order.lines.all()})


@require_http_methods(["GET", "POST"])
@never_cache
def demo_checkout(request: HttpRequest, session_id: str) -> HttpResponse:
    customer_key = customer_key_read(request)
    if not demo_mode() or not customer_key:
        raise Http404("No such checkout.")
    if request.method == "POST":
        if request.POST.get("action") == "pay":
            form = EmailForm(request.POST)
            if not form.is_valid():
                # As Stripe's page would: nothing happens until the address is a real one.
                return _demo_checkout_page(request, customer_key, session_id, form, status=400)
            try:
                checkout_pay_on_our_page(
                    customer_key=customer_key,
                    session_id=session_id,
                    email=form.cleaned_data["email"],
                )
            except ShopError as exc:
                if exc.status == 404:
                    raise Http404(exc.message) from None
            return HttpResponseSeeOther(
                reverse("shop:checkout_success") + "?session_id=" + session_id
            )
        return HttpResponseSeeOther(reverse("shop:storefront") + "?notice=cancelled")
    return _demo_checkout_page(request, customer_key, session_id, EmailForm())


def _demo_checkout_page(
    request: HttpRequest, customer_key: str, session_id: str, form: EmailForm, status: int = 200
) -> HttpResponse:
    order = order_for_browser_session(customer_key=customer_key, session_id=session_id)
    if order is None:
        raise Http404("No such checkout.")
    return render(
        request,
        "shop/demo_checkout.html",
        {"order": order, "payable": order.status == OrderStatus.PENDING, "form": form},
        status=status,
    )


@require_GET
@never_cache
def order_page(request: HttpRequest, reference: str) -> HttpResponse:
    """An order as its emailed link shows it, on any device: lines, total, status, nothing else."""
    order = order_for_link(reference=reference, token=request.GET.get("token", ""))
    if order is None:
        raise Http404("No such order.")
    response = render(request, "shop/order.html", {"order": order})
    # The link is the key to the page: search engines must not keep it.
    response["X-Robots-Tag"] = "noindex"
    return response


def _posted_email(group: str, request: HttpRequest) -> str:
    return email_normalized(request.POST.get("email", ""))[:254]


@require_http_methods(["GET", "POST"])
@limit_body(FIND_ORDERS_MAX_BYTES)
@ratelimit(
    group="find-orders-ip",
    key="ip",
    rate=lambda g, r: settings.FIND_ORDERS_RATE_PER_IP,
    method="POST",
    block=True,
)
@ratelimit(
    group="find-orders-address",
    key=_posted_email,
    rate=lambda g, r: settings.FIND_ORDERS_RATE_PER_ADDRESS,
    method="POST",
    block=True,
)
def orders_find(request: HttpRequest) -> HttpResponse:
    """Find my orders: ask for a link to an address's orders, sent to that address.

    The answer is the same whether or not the address bought here (the email is sent, or not,
    by the worker), so the page tells nobody who the shop's customers are.
    """
    if request.method == "POST":
        form = EmailForm(request.POST)
        if form.is_valid():
            orders_link_request(email=email_normalized(form.cleaned_data["email"]))
            return HttpResponseSeeOther(reverse("shop:orders_find_sent"))
        return render(request, "shop/find_orders.html", {"form": form}, status=400)
    return render(request, "shop/find_orders.html", {"form": EmailForm()})


@require_GET
def orders_find_sent(request: HttpRequest) -> HttpResponse:
    return render(request, "shop/find_orders.html", {"sent": True})


@require_GET
@never_cache
def orders_find_open(request: HttpRequest) -> HttpResponse:
    """The emailed link: this browser shows that address's orders under My Orders from now on."""
    email = orders_link_email(token=request.GET.get("token", ""))
    if email is None:
        context = {"form": EmailForm(), "link_error": True}
        return render(request, "shop/find_orders.html", context, status=400)
    response = HttpResponseSeeOther(reverse("shop:storefront") + "?notice=orders-found#my-orders")
    customer_email_link(request, response, email)
    return response


@csrf_exempt
@require_POST
@limit_body(settings.STRIPE_WEBHOOK_MAX_BYTES)
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    allowed = settings.STRIPE_WEBHOOK_ALLOWED_IPS
    if allowed and client_ip(request) not in allowed:
        return JsonResponse({"error": "forbidden"}, status=403)
    if request.content_type != "application/json":
        return JsonResponse({"error": "expected application/json"}, status=415)
    result = webhook_receive(
        body=request.body,
        # Only the headers a delivery keeps, read from META: building request.headers parses
        # every header (10 µs, a few per cent of a repeated delivery).
        headers={
            name: request.META[key]
            for name in KEPT_HEADERS
            if (key := HttpHeaders.to_wsgi_name(name)) in request.META
        },
        remote_addr=client_ip(request),
    )
    return JsonResponse(
        {"kind": result.kind, "result": str(result)}, status=WEBHOOK_STATUS[result.kind]
    )


@require_GET
@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return HttpResponse("database unavailable\n", status=503, content_type="text/plain")
    return HttpResponse("ok\n", content_type="text/plain")


@require_GET
@never_cache
def healthz_worker(request: HttpRequest) -> HttpResponse:
    """For a monitor: 200 while workers run and take due tasks, 503 otherwise. Apart from
    /healthz, so that a load balancer does not take app servers out for a worker's fault."""
    try:
        health = worker_health_public()
    except DatabaseError:
        return HttpResponse("database unavailable\n", status=503, content_type="text/plain")
    status = 200 if health.state == WorkerState.OK else 503
    return HttpResponse(f"{health.describe()}\n", status=status, content_type="text/plain")


def _storefront(
    request: HttpRequest,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
    posted: Any = None,
) -> HttpResponse:
    """The one storefront page: its product list and My Orders are cached fragments, keyed on
    what they show (see the selectors); a cart error shows the products with what was posted."""
    catalogue = catalogue_for_storefront()
    context = {
        "catalogue": catalogue,
        "quantities": _posted_quantities(posted) if error else None,
        "orders": orders_for_customer(
            customer_key=customer_key_read(request),
            before=request.GET.get("before"),
            emails=customer_emails_read(request),
        ),
        "notice": notice,
        "error": error,
    }
    response = render(request, "shop/storefront.html", context, status=status)
    # The page shows this browser's orders: no shared cache may keep it.
    patch_cache_control(response, private=True)
    return response


def _posted_quantities(posted: Any) -> dict[str, str]:
    """What the customer typed, to show again beside the error (only well-formed numbers)."""
    catalogue = catalogue_for_storefront()
    quantities = {}
    for product in catalogue.products:
        raw = posted.get(cart_field_name(product.id), "") if posted is not None else ""
        ok = isinstance(raw, str) and raw.isdigit() and len(raw) <= 2
        quantities[cart_field_name(product.id)] = raw if ok else "0"
    return quantities
