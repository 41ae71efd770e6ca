"""axe-core on every page a customer meets, at desktop and phone widths, plus keyboard focus."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from shop.orders.links import order_link_token
from shop.orders.models import OrderStatus
from tests.browser.support import (
    PHONE,
    assert_accessible,
    assert_fits_width,
    login,
    open_demo_checkout,
    placed_order,
    set_quantities,
)

pytestmark = pytest.mark.django_db(transaction=True)


def storefront_empty(page: Page, products, base_url) -> None:
    page.goto("/")


def storefront_with_orders(page: Page, products, base_url) -> None:
    login(page, base_url=base_url, customer_key="a11y")
    start = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
    for i in range(11):
        placed_order(
            customer_key="a11y",
            lines=[(products[i % 2], 1), (products[2], 2)],
            created_at=start + timedelta(days=i),
            status=OrderStatus.REFUNDED if i == 10 else OrderStatus.PAID,
        )
    page.goto("/")
    set_quantities(page, products, 1, 2, 0)


def storefront_older_orders(page: Page, products, base_url) -> None:
    storefront_with_orders(page, products, base_url)
    page.get_by_role("link", name="Older orders").click()
    expect(page.get_by_role("link", name="Newest orders")).to_be_visible()


def storefront_with_cart_error(page: Page, products, base_url) -> None:
    page.goto("/")
    page.locator("#buy").click()
    expect(page.locator("#cart-error")).to_be_visible()


def storefront_after_cancel(page: Page, products, base_url) -> None:
    open_demo_checkout(page, products, 1, 0, 0)
    page.locator("#cancel").click()
    expect(page.locator("#notice")).to_be_visible()


def demo_checkout_email_error(page: Page, products, base_url) -> None:
    open_demo_checkout(page, products, 1, 0, 0)
    page.locator("#email").fill("not an address")
    page.locator("#email").evaluate("el => el.type = 'text'")  # past the browser's own check
    page.locator("#pay").click()
    expect(page.locator("#email-error")).to_be_visible()


def order_page(page: Page, products, base_url) -> None:
    order = placed_order(
        customer_key="a11y",
        lines=[(products[0], 1), (products[2], 2)],
        created_at=datetime(2025, 6, 1, 9, 0, tzinfo=UTC),
    )
    token = order_link_token(reference=order.reference)
    page.goto(f"/orders/{order.reference}/?token={token}")
    expect(page.locator("#order")).to_have_attribute("data-status", "paid")


def find_orders_error(page: Page, products, base_url) -> None:
    page.goto("/orders/find/")
    page.locator("#email").fill("jo@")
    page.locator("#email").evaluate("el => el.type = 'text'")
    page.locator("#find").click()
    expect(page.locator("#email-error")).to_be_visible()


def find_orders_sent(page: Page, products, base_url) -> None:
    page.goto("/orders/find/")
    page.locator("#email").fill("jo@example.com")
    page.locator("#find").click()
    expect(page.locator("#find-sent")).to_be_visible()


def not_found(page: Page, products, base_url) -> None:
    assert page.goto("/no-such-page/").status == 404


# With orders, the demo checkout and the success page are audited at both widths on the way to
# their screenshots (test_screenshots.py); the success page's other states in
# test_success_page.py.
PAGES: dict[str, Callable[..., None]] = {
    "storefront-empty": storefront_empty,
    "storefront-older-orders": storefront_older_orders,
    "storefront-cart-error": storefront_with_cart_error,
    "storefront-after-cancel": storefront_after_cancel,
    "demo-checkout-email-error": demo_checkout_email_error,
    "order-page": order_page,
    "find-orders-error": find_orders_error,
    "find-orders-sent": find_orders_sent,
    "not-found": not_found,
}


@pytest.mark.parametrize("name", PAGES)
def test_page_has_no_serious_accessibility_violations(page: Page, products, base_url, name):
    PAGES[name](page, products, base_url)
    assert_accessible(page)


@pytest.mark.browser_context_args(viewport=PHONE, is_mobile=True, has_touch=True)
def test_error_page_fits_a_phone_and_has_no_serious_accessibility_violations(page: Page):
    assert page.goto("/no-such-page/").status == 404
    assert_fits_width(page)
    assert_accessible(page)


def test_every_control_on_the_storefront_shows_keyboard_focus(page: Page, products, base_url):
    storefront_with_orders(page, products, base_url)
    page.goto("/")

    reached = []
    for _ in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate("""() => {
            const el = document.activeElement;
            if (el === document.body) { return null; }
            const style = getComputedStyle(el);
            return {id: el.id || el.textContent.trim().slice(0, 30), outline: style.outlineStyle,
                    width: parseFloat(style.outlineWidth), visible: el.checkVisibility()};
        }""")
        if focused is None or focused["id"] in [r["id"] for r in reached]:
            break
        reached.append(focused)

    names = [r["id"] for r in reached]
    assert names[0] == "Skip to content"
    assert [f"quantity-{p.pk}" for p in products] + ["buy"] == [
        n for n in names if n.startswith("quantity-") or n == "buy"
    ]
    assert "Older orders" in names
    for r in reached:
        assert r["visible"] and r["outline"] == "solid" and r["width"] >= 2, r
