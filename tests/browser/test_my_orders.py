"""My Orders as the customer sees it: badges, local dates, newest first, ten to a page."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from shop.orders.models import OrderStatus
from tests.browser.support import order_articles, placed_order

pytestmark = pytest.mark.django_db(transaction=True)


def test_my_orders_pages_newest_first_ten_at_a_time(page: Page, products, customer):
    start = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    orders = [
        placed_order(
            customer_key=customer,
            lines=[(products[i % 3], i + 1)],
            created_at=start + timedelta(days=i),
            status=OrderStatus.REFUNDED if i == 11 else OrderStatus.PAID,
        )
        for i in range(12)
    ]
    newest_first = [o.reference for o in reversed(orders)]

    page.goto("/")

    articles = order_articles(page)
    expect(articles).to_have_count(10)
    assert [a.get_attribute("data-order-id") for a in articles.all()] == newest_first[:10]
    expect(articles.first).to_have_attribute("data-status", "refunded")
    expect(articles.first.locator(".badge")).to_have_text(re.compile("Refunded"))
    expect(articles.nth(1).locator(".badge")).to_have_text(re.compile("Paid"))
    expect(page.get_by_role("link", name="Newest orders")).to_have_count(0)

    page.get_by_role("link", name="Older orders").click()

    expect(articles).to_have_count(2)
    assert [a.get_attribute("data-order-id") for a in articles.all()] == newest_first[10:]
    expect(page.get_by_role("link", name="Older orders")).to_have_count(0)
    page.get_by_role("link", name="Newest orders").click()
    expect(articles).to_have_count(10)


@pytest.mark.parametrize(
    "shown",
    [
        pytest.param(
            "Jan 14, 2025, 10:30 PM",
            id="new-york",
            marks=pytest.mark.browser_context_args(locale="en-US", timezone_id="America/New_York"),
        ),
        pytest.param(
            "15 Jan 2025, 12:30",
            id="tokyo",
            marks=pytest.mark.browser_context_args(locale="en-GB", timezone_id="Asia/Tokyo"),
        ),
    ],
)
def test_order_dates_are_in_the_customers_time_zone_and_language(
    page: Page, products, customer, shown
):
    order = placed_order(
        customer_key=customer,
        lines=[(products[0], 1)],
        created_at=datetime(2025, 1, 15, 3, 30, tzinfo=UTC),
    )

    page.goto("/")

    date = page.locator(f'article[data-order-id="{order.reference}"] time')
    expect(date).to_have_text(shown)
    expect(date).to_have_attribute("datetime", "2025-01-15T03:30:00+00:00")


def test_a_first_visit_shows_an_empty_history_and_no_pager(page: Page, products):
    page.goto("/")

    expect(order_articles(page)).to_have_count(0)
    expect(page.locator("#my-orders")).to_contain_text("No orders yet")
    expect(page.locator("#my-orders nav")).to_have_count(0)
