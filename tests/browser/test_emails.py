"""After the purchase, in Chromium: the confirmation arrives by email, its link shows the order
in another browser, and Find my orders there brings the order into that browser's My Orders."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.support import demo_pay, open_demo_checkout, order_articles

pytestmark = pytest.mark.django_db(transaction=True)
ANA = "ana@example.com"


def link_in(message, path):
    return re.search(rf"(http://\S+{re.escape(path)}\S*)", message.text).group(1)


def test_the_confirmation_link_and_find_my_orders_work_in_a_second_browser(
    page: Page, products, new_page, smtp, worker
):
    order = open_demo_checkout(page, products, 1, 0, 2)
    demo_pay(page, ANA)
    page.wait_for_url("**/checkout/success/?session_id=*")
    expect(page.locator("#order-result")).to_have_attribute("data-status", "paid")

    (confirmation,) = smtp.wait_for(1, to=ANA)
    assert order.reference in confirmation.subject
    assert smtp.wait_for(1, to="owner@example.com")[0].subject.startswith("New order")

    phone = new_page()  # another browser: no cookie of the first one
    phone.goto(link_in(confirmation, f"/orders/{order.reference}/"))
    expect(phone.locator("#order")).to_have_attribute("data-status", "paid")
    expect(phone.locator("#order")).to_contain_text(order.reference)
    expect(phone.locator("#order .lines li")).to_have_count(2)

    phone.goto("/")
    expect(order_articles(phone)).to_have_count(0)
    phone.locator("#find-orders").click()
    phone.locator("#email").fill(ANA.upper())
    phone.locator("#find").click()
    expect(phone.locator("#find-sent")).to_contain_text("If we have orders for that address")

    link = smtp.wait_for(2, to=ANA)[1]
    assert link.subject == "Your orders at Corner Shop"
    phone.goto(link_in(link, "/orders/find/open/"))
    phone.wait_for_url(re.compile(r"/\?notice=orders-found#my-orders$"))
    expect(order_articles(phone)).to_have_count(1)
    expect(order_articles(phone).first).to_have_attribute("data-order-id", order.reference)
    expect(order_articles(phone).first).to_have_attribute("data-status", "paid")
    assert len(smtp.received) == 3  # confirmation, owner's notice, the link: each once
