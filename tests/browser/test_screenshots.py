"""The customer's pages at desktop and phone width, and the owner's overview: screenshots (into
docs/screenshots/ with `make screenshots`), and on each page no sideways scrolling, no serious
axe violation and nothing the strict CSP blocks (the `page` fixture fails on any)."""

from datetime import UTC, datetime

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from shop.background.health import worker_heartbeat
from shop.background.models import WorkerHeartbeat
from shop.orders.models import OrderStatus
from tests.browser.support import (
    DESKTOP,
    PHONE,
    SCREENSHOTS,
    admin_login,
    assert_accessible,
    assert_fits_width,
    demo_pay,
    month_of_sales,
    open_demo_checkout,
    placed_order,
    screenshot,
    set_quantities,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    "size",
    [
        pytest.param("desktop", marks=pytest.mark.browser_context_args(viewport=DESKTOP)),
        pytest.param(
            "phone",
            marks=pytest.mark.browser_context_args(viewport=PHONE, is_mobile=True, has_touch=True),
        ),
    ],
)
def test_customer_pages_at_desktop_and_phone_width(page: Page, products, customer, size):
    placed_order(
        customer_key=customer,
        lines=[(products[0], 2), (products[2], 1)],
        created_at=datetime(2025, 3, 11, 15, 9, tzinfo=UTC),
    )
    placed_order(
        customer_key=customer,
        lines=[(products[1], 1)],
        created_at=datetime(2025, 3, 14, 16, 42, tzinfo=UTC),
        status=OrderStatus.REFUNDED,
    )

    def settle() -> None:
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        page.evaluate("() => document.fonts.ready")
        assert_fits_width(page)

    page.goto("/")
    set_quantities(page, products, 2, 1, 0)
    settle()
    page.evaluate("() => window.scrollTo(0, 0)")
    # A phone shows what fits its screen (the total bar sticks to the bottom of it); the
    # desktop page is short enough to show whole.
    screenshot(page, f"storefront-{size}", full_page=size == "desktop")
    assert_accessible(page)

    section = page.locator("#my-orders")
    expect(section.locator("article")).to_have_count(2)
    box = section.bounding_box()
    screenshot(
        page,
        f"my-orders-{size}",
        full_page=True,
        clip={
            "x": 0,
            "y": box["y"] - 16,
            "width": page.viewport_size["width"],
            "height": box["height"] + 32,
        },
    )

    open_demo_checkout(page, products, 2, 1, 0)
    settle()
    screenshot(page, f"checkout-{size}")
    assert_accessible(page)

    demo_pay(page)
    expect(page.locator("#order-result")).to_have_attribute("data-status", "paid")
    settle()
    screenshot(page, f"success-{size}")
    assert_accessible(page)

    for name in ("storefront", "my-orders", "checkout", "success"):
        assert (SCREENSHOTS / f"{name}-{size}.png").stat().st_size < 400_000


def test_owner_overview_under_the_strict_csp(page: Page, products, settings):
    settings.SHOP_TIME_ZONE = "America/New_York"
    month_of_sales(products)
    worker_heartbeat(worker_id="worker-1", started_at=timezone.now())  # a running shop's worker
    admin_login(page)
    page.locator("#owner-overview-link").click()
    page.wait_for_url("**/admin/overview/")

    response = page.reload()
    assert "style-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator("svg.revenue-chart g.chart-day")).to_have_count(30)
    expect(page.locator("#revenue-table tbody tr")).to_have_count(30)
    expect(page.locator("#worker-health")).to_have_attribute("data-state", "ok")
    # The stylesheet is ours and applied: the figures are laid out as a grid.
    assert page.locator(".overview-totals").evaluate("e => getComputedStyle(e).display") == "grid"
    sales = page.locator("svg.revenue-chart rect.chart-sales")
    assert max(sales.evaluate_all("rects => rects.map(r => r.getBBox().height)")) > 100
    page.evaluate("() => document.fonts.ready")
    assert_fits_width(page)
    assert_accessible(page)
    path = screenshot(page, "owner-overview", full_page=True)
    assert path.stat().st_size < 400_000

    # Without a worker the owner is warned, as accessibly as the rest of the page.
    WorkerHeartbeat.objects.all().delete()
    page.reload()
    expect(page.locator("#worker-health")).to_have_attribute("data-state", "no_worker")
    expect(page.locator("#worker-health")).to_contain_text("Background work is not being done.")
    assert_accessible(page)
