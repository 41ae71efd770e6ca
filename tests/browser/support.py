"""Helpers the browser tests share: shop actions, test data, axe and screenshots."""

import json
import os
import random
import tempfile
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import Locator, Page, expect

from shop.catalogue.models import Product
from shop.orders.cart import cart_price
from shop.orders.checkout import checkout_start
from shop.orders.models import Order, OrderLine, OrderStatus
from shop.refunds.models import Dispute, Refund, RefundOrigin, RefundStatus
from shop.web.customer import COOKIE_NAME, customer_cookie_value

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
# `make screenshots` writes the README's pictures; an ordinary test run keeps the tree clean.
SCREENSHOTS = Path(
    os.environ.get("SHOP_SCREENSHOTS_DIR") or Path(tempfile.gettempdir()) / "shop-screenshots"
)
BLOCKING_IMPACTS = ("serious", "critical")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}


def placed_order(
    *,
    customer_key: str,
    lines: list[tuple[Product, int]],
    created_at: datetime,
    status: str = OrderStatus.PAID,
) -> Order:
    """An order as a past purchase left it (paid, refunded, or not), with its line snapshot."""
    order = Order.objects.create(
        customer_key=customer_key,
        status=status,
        currency="usd",
        amount_total=sum(product.unit_amount * quantity for product, quantity in lines),
        cart_key=f"test-{created_at.timestamp()}",
        checkout_expires_at=created_at,
        created_at=created_at,
        paid_at=created_at if status in (OrderStatus.PAID, OrderStatus.REFUNDED) else None,
    )
    OrderLine.objects.bulk_create(
        OrderLine(
            order=order,
            product=product,
            product_name=product.name,
            unit_amount=product.unit_amount,
            quantity=quantity,
        )
        for product, quantity in lines
    )
    return order


def admin_login(page: Page, *, username: str = "owner") -> None:
    """Log the page's browser in to the admin as a new superuser, through the login form."""
    password = "owner-password-for-tests"  # noqa: S105
    get_user_model().objects.create_superuser(username, f"{username}@example.com", password)
    page.goto("/admin/login/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(password)
    page.locator("input[type=submit]").click()
    page.wait_for_url("**/admin/")


def month_of_sales(products: list[Product], *, seed: int = 14) -> None:
    """Thirty days of a small shop, as the owner's overview shows them: sales most days (none on
    one), refunds in full and in part, a dispute, failed and abandoned checkouts, two orders
    needing review."""
    rng = random.Random(seed)
    now = timezone.now()
    for days_ago in range(30):
        if days_ago == 9:
            continue  # a day without sales
        for _ in range(rng.randint(1, 6)):
            lines = [(p, rng.randint(1, 3)) for p in rng.sample(products, rng.randint(1, 2))]
            when = now - timedelta(days=days_ago, minutes=rng.randint(0, 600))
            status = rng.choices(
                [OrderStatus.PAID, OrderStatus.FAILED, OrderStatus.EXPIRED], [8, 1, 1]
            )[0]
            placed_order(
                customer_key=f"overview-{rng.randrange(40)}",
                lines=lines,
                created_at=when,
                status=status,
            )
    paid = list(Order.objects.filter(status=OrderStatus.PAID).order_by("paid_at"))
    # Refunds on past days, and (so that "this month" always shows some) minutes ago.
    refunds = [(paid[3], 1, timedelta(days=20)), (paid[12], 2, timedelta(days=11))]
    refunds += [(paid[-6], 1, timedelta(minutes=3)), (paid[-12], 3, timedelta(minutes=2))]
    for order, share, ago in refunds:
        given_back = order.amount_total // share
        Order.objects.filter(pk=order.pk).update(
            amount_refunded=given_back,
            status=OrderStatus.REFUNDED if share == 1 else OrderStatus.PAID,
        )
        Refund.objects.create(
            order=order,
            payment_intent_id=f"pi_overview_{order.pk}",
            amount=given_back,
            currency="usd",
            status=RefundStatus.SUCCEEDED,
            origin=RefundOrigin.SHOP,
            created_at=now - ago,
        )
    Refund.objects.create(
        order=paid[-3],
        payment_intent_id=f"pi_overview_{paid[-3].pk}",
        amount=500,
        currency="usd",
        status=RefundStatus.PENDING,
        origin=RefundOrigin.SHOP,
        created_at=now - timedelta(minutes=1),
    )
    disputed = paid[-10]
    Order.objects.filter(pk=disputed.pk).update(disputed=True)
    Dispute.objects.create(
        provider_dispute_id="dp_overview",
        order=disputed,
        payment_intent_id=f"pi_overview_{disputed.pk}",
        amount=disputed.amount_total,
        currency="usd",
        status="needs_response",
        evidence_due_by=now + timedelta(days=6),
        created_at=now - timedelta(minutes=4),
    )
    Order.objects.filter(pk=paid[-2].pk).update(
        needs_review=True, review_reason="Paid through an unexpected session."
    )
    expired = Order.objects.filter(status=OrderStatus.EXPIRED).order_by("-id")[0]
    Order.objects.filter(pk=expired.pk).update(
        needs_review=True, review_reason="Paid after its checkout expired."
    )
    placed_order(
        customer_key="overview-open-checkout",
        lines=[(products[0], 1)],
        created_at=now - timedelta(minutes=20),
        status=OrderStatus.PENDING,
    )


def login(page: Page, *, base_url: str, customer_key: str) -> None:
    """Give the page's browser the cookie of `customer_key`, as a past checkout would."""
    page.context.add_cookies(
        [
            {
                "name": COOKIE_NAME,
                "value": customer_cookie_value(customer_key),
                "url": base_url,
                "httpOnly": True,
                "sameSite": "Lax",
            }
        ]
    )


def order_articles(page: Page) -> Locator:
    return page.locator("#my-orders article[data-order-id]")


def quantity_field(page: Page, product: Product) -> Locator:
    return page.locator(f"#quantity-{product.pk}")


def set_quantities(page: Page, products: list[Product], *quantities: int) -> None:
    for product, quantity in zip(products, quantities, strict=False):
        quantity_field(page, product).fill(str(quantity))


def dollars(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"


def open_demo_checkout(page: Page, products: list[Product], *quantities: int) -> Order:
    """From the storefront to the demo payment page; return the pending order."""
    page.goto("/")
    set_quantities(page, products, *quantities)
    page.locator("#buy").click()
    page.wait_for_url("**/demo/checkout/*/")
    return Order.objects.get(checkout_session_id=page.url.rstrip("/").rsplit("/", 1)[-1])


def open_checkout_for(
    page: Page, *, base_url: str, customer_key: str, quantities: dict[Product, int]
) -> Order:
    """Give the page's browser an open (pending) checkout, without the trip through the pages."""
    login(page, base_url=base_url, customer_key=customer_key)
    cart = cart_price(quantities={product.pk: n for product, n in quantities.items()})
    checkout_start(
        customer_key=customer_key,
        cart=cart,
        success_url=base_url + "/checkout/success/",
        cancel_url=base_url + "/",
    )
    return Order.objects.get(customer_key=customer_key, status=OrderStatus.PENDING)


def demo_pay(page: Page, email: str = "customer@example.com") -> None:
    """On the demo checkout page: give the address for the receipt and press Pay."""
    page.locator("#email").fill(email)
    page.locator("#pay").click()


def demo_purchase(
    page: Page, products: list[Product], *quantities: int, email: str = "customer@example.com"
) -> Order:
    """Buy and pay in demo mode; return the order, once the success page says it is paid."""
    order = open_demo_checkout(page, products, *quantities)
    demo_pay(page, email)
    page.wait_for_url("**/checkout/success/?session_id=*")
    expect(page.locator("#order-result")).to_have_attribute("data-status", "paid")
    order.refresh_from_db()
    return order


@cache
def _axe_source() -> str:
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `npm ci` at the repository root.")
    return AXE.read_text(encoding="utf-8")


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Run axe-core in the page and return its serious and critical violations.

    axe's source goes in through page.evaluate, which Chromium runs over the DevTools protocol
    outside the page's Content-Security-Policy. The policy under test stays on: add_script_tag
    would be an inline script the CSP blocks, and a bypass_csp context would switch the policy
    off and hide any inline script or style our own pages slipped in.
    """
    page.evaluate(_axe_source())
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "targets": [node["target"] for node in v["nodes"]],
        }
        for v in result["violations"]
        if v["impact"] in BLOCKING_IMPACTS
    ]


def assert_accessible(page: Page) -> None:
    violations = axe_violations(page)
    assert violations == [], json.dumps(violations, indent=2)


def assert_fits_width(page: Page) -> None:
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow}px"


def screenshot(page: Page, name: str, **kwargs: Any) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), animations="disabled", caret="hide", **kwargs)
    return path
