"""The page after paying says honestly what happened, and always leads back to My Orders."""

import re

import pytest
from playwright.sync_api import Page, expect

from shop.orders.models import OrderStatus
from shop.orders.services import order_transition
from tests.browser.support import assert_accessible, open_checkout_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("status", "heading", "says"),
    [
        ("pending", "Payment is being processed", "You will not be charged twice"),
        ("failed", "The payment did not go through", "No money was taken"),
        ("expired", "This checkout has expired", "No money was taken"),
        ("refunded", "Thank you — payment received", "has since been refunded"),
    ],
)
def test_success_page_tells_the_outcome(page: Page, products, base_url, status, heading, says):
    order = open_checkout_for(
        page, base_url=base_url, customer_key="success-page", quantities={products[0]: 1}
    )
    if status == "refunded":
        order_transition(order=order, to=OrderStatus.PAID, cause="browser_test")
    if status != "pending":
        order_transition(order=order, to=OrderStatus(status), cause="browser_test")

    page.goto(f"/checkout/success/?session_id={order.checkout_session_id}")

    result = page.locator("#order-result")
    expect(result).to_have_attribute("data-status", status)
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(heading))
    expect(result).to_contain_text(says)
    expect(result).to_contain_text(order.reference)
    expect(page.locator("#my-orders-link")).to_have_attribute("href", "/#my-orders")
    if status in ("pending", "failed"):  # the others share their markup with failed and paid
        assert_accessible(page)


def test_processing_page_offers_to_check_again_and_then_shows_paid(page: Page, products, base_url):
    order = open_checkout_for(
        page, base_url=base_url, customer_key="success-page", quantities={products[1]: 2}
    )
    page.goto(f"/checkout/success/?session_id={order.checkout_session_id}")
    expect(page.locator("#order-result")).to_have_attribute("data-status", "pending")

    order_transition(order=order, to=OrderStatus.PAID, cause="browser_test")
    page.get_by_role("link", name="Check again").click()

    expect(page.locator("#order-result")).to_have_attribute("data-status", "paid")
    expect(page.get_by_role("link", name="Check again")).to_have_count(0)
