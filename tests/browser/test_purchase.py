"""The customer's purchase, end to end in Chromium: demo mode and real mode (fake Stripe)."""

import re

import pytest
from playwright.sync_api import Page, expect

from shop.orders.models import Order, OrderStatus
from shop.payments.models import WebhookEvent
from tests.browser.support import (
    demo_pay,
    demo_purchase,
    dollars,
    open_demo_checkout,
    order_articles,
    quantity_field,
    set_quantities,
)

# live_server would ask for transactional_db by itself; say so here, as the server thread and
# the test share committed data only.
pytestmark = pytest.mark.django_db(transaction=True)


def test_demo_purchase_from_quantities_to_my_orders(page: Page, products):
    page.goto("/")
    expect(page.locator("#demo-banner")).to_be_visible()
    total = page.locator("#cart-total")
    expect(total).to_have_text("$0.00")

    set_quantities(page, products, 2, 1, 0)
    expect(total).to_have_text(dollars(2 * products[0].unit_amount + products[1].unit_amount))
    page.get_by_role("button", name=f"Add one {products[2].name}").click()
    expected = 2 * products[0].unit_amount + products[1].unit_amount + products[2].unit_amount
    expect(total).to_have_text(dollars(expected))
    expect(page.locator("#cart-count")).to_have_text("4 items")
    expect(quantity_field(page, products[2])).to_have_value("1")

    page.locator("#buy").click()
    page.wait_for_url("**/demo/checkout/*/")
    expect(page.locator("#amount-due")).to_have_text(dollars(expected))
    demo_pay(page)

    page.wait_for_url("**/checkout/success/?session_id=*")
    result = page.locator("#order-result")
    expect(result).to_have_attribute("data-status", "paid")
    expect(page.get_by_role("heading", level=1)).to_contain_text("payment received")
    reference = result.get_attribute("data-order-id")
    order = Order.objects.get(reference=reference)
    assert (order.status, order.amount_total) == (OrderStatus.PAID, expected)

    page.locator("#my-orders-link").click()
    page.wait_for_url(re.compile(r"/#my-orders$"))
    mine = page.locator(f'#my-orders article[data-order-id="{reference}"]')
    expect(mine).to_have_attribute("data-status", "paid")
    expect(mine.locator(".badge")).to_have_text(re.compile("Paid"))
    expect(mine).to_contain_text(dollars(expected))


@pytest.mark.browser_context_args(java_script_enabled=False)
def test_the_purchase_works_without_javascript(page: Page, products):
    page.goto("/")
    expect(page.locator("#cart-summary")).to_be_hidden()  # no live total to go stale
    set_quantities(page, products, 0, 0, 3)

    page.locator("#buy").click()
    page.wait_for_url("**/demo/checkout/*/")
    expect(page.locator("#amount-due")).to_have_text(dollars(3 * products[2].unit_amount))
    demo_pay(page)

    page.wait_for_url("**/checkout/success/?session_id=*")
    expect(page.locator("#order-result")).to_have_attribute("data-status", "paid")


def test_cancel_on_the_demo_page_returns_to_the_same_cart_unpaid(page: Page, products):
    order = open_demo_checkout(page, products, 1, 0, 2)

    page.locator("#cancel").click()

    page.wait_for_url("**/?notice=cancelled")
    expect(page.locator("#notice")).to_contain_text("Checkout cancelled")
    expect(quantity_field(page, products[0])).to_have_value("1")
    expect(quantity_field(page, products[2])).to_have_value("2")
    expect(page.locator("#cart-total")).to_have_text(dollars(order.amount_total))
    expect(order_articles(page)).to_have_count(0)
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING


@pytest.mark.parametrize(
    ("quantities", "message"),
    [
        pytest.param((0, 0, 0), "Choose at least one product.", id="all-zero"),
        pytest.param((150, 1, 0), "Quantities must be whole numbers from 0 to 99.", id="too-many"),
    ],
)
def test_invalid_cart_is_refused_by_the_server_with_its_message(
    page: Page, products, quantities, message
):
    page.goto("/")
    # The browser would stop 150 itself (max=99): switch its validation off to reach the server.
    page.locator("#cart").evaluate("form => { form.noValidate = true; }")
    set_quantities(page, products, *quantities)

    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/checkout/")
    ) as answer:
        page.locator("#buy").click()

    assert answer.value.status == 400
    error = page.locator("#cart-error")
    expect(error).to_have_text(message)
    expect(error).to_have_attribute("role", "alert")
    expect(page.locator("#buy")).to_be_enabled()
    assert Order.objects.count() == 0


def test_live_total_flags_a_quantity_the_server_would_refuse(page: Page, products):
    page.goto("/")
    set_quantities(page, products, 150)

    expect(page.locator("#cart-total")).to_have_text("—")
    expect(page.locator("#cart-count")).to_contain_text("whole numbers from 0 to 99")
    expect(quantity_field(page, products[0])).to_have_attribute("aria-invalid", "true")


def test_double_click_on_buy_sends_one_request_and_creates_one_order(page: Page, products):
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto("/")
    set_quantities(page, products, 1, 1, 0)

    page.locator("#buy").dblclick()

    page.wait_for_url("**/demo/checkout/*/")
    assert [url for url in posts if url.endswith("/checkout/")] == [
        page.url.split("/demo/")[0] + "/checkout/"
    ]
    assert Order.objects.count() == 1


def test_buy_disables_itself_while_the_checkout_opens_and_recovers_on_back(page: Page, products):
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto("/")
    set_quantities(page, products, 1, 0, 0)
    # Record, as each submit event finishes, what the customer would see, then try to submit
    # again. The record goes to sessionStorage, which outlives the navigation to the next page.
    page.evaluate("""() => {
        const seen = [];
        window.addEventListener("submit", (event) => {
            const buy = document.getElementById("buy");
            seen.push({disabled: buy.disabled, label: buy.textContent, sent: !event.defaultPrevented});
            sessionStorage.setItem("submits", JSON.stringify(seen));
            if (seen.length === 1) { setTimeout(() => event.target.requestSubmit(), 0); }
        });
    }""")

    page.locator("#buy").click()

    page.wait_for_url("**/demo/checkout/*/")
    submits = page.evaluate("() => JSON.parse(sessionStorage.getItem('submits'))")
    assert submits == [
        {"disabled": True, "label": "Opening checkout…", "sent": True},
        {"disabled": True, "label": "Opening checkout…", "sent": False},
    ]
    assert len([url for url in posts if url.endswith("/checkout/")]) == 1

    page.go_back()
    expect(page.locator("#buy")).to_be_enabled()
    expect(page.locator("#buy")).to_have_text("Buy")
    expect(quantity_field(page, products[0])).to_have_value("1")
    assert Order.objects.count() == 1


def test_keyboard_only_purchase_with_visible_focus(page: Page, products):
    def tab_to(selector: str) -> None:
        for _ in range(20):
            page.keyboard.press("Tab")
            if page.evaluate("s => document.activeElement.matches(s)", selector):
                outline = page.evaluate(
                    "() => getComputedStyle(document.activeElement).outlineStyle"
                )
                assert outline == "solid", f"{selector} has no visible focus"
                return
        pytest.fail(f"Tab never reached {selector}")

    page.goto("/")
    page.keyboard.press("Tab")
    expect(page.locator(".skip")).to_be_focused()
    expect(page.locator(".skip")).to_be_in_viewport()

    tab_to(f"#quantity-{products[0].pk}")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    tab_to(f"#quantity-{products[1].pk}")
    page.keyboard.press("Control+A")
    page.keyboard.type("3")
    expected = 2 * products[0].unit_amount + 3 * products[1].unit_amount
    expect(page.locator("#cart-total")).to_have_text(dollars(expected))
    page.keyboard.press("Enter")  # implicit submission from the quantity field

    page.wait_for_url("**/demo/checkout/*/")
    tab_to("#email")
    page.keyboard.type("keys@example.com")
    tab_to("#pay")
    page.keyboard.press("Enter")

    page.wait_for_url("**/checkout/success/?session_id=*")
    expect(page.locator("#order-result")).to_have_attribute("data-status", "paid")
    assert Order.objects.get().amount_total == expected


def test_real_mode_pays_on_the_stripe_page_and_the_webhook_marks_the_order_paid(
    page: Page,
    products,
    fake_stripe,
    live_server,
):
    fake_stripe.webhook_url = live_server.url + "/stripe/webhook/"
    page.goto("/")
    expect(page.locator("#demo-banner")).to_have_count(0)
    set_quantities(page, products, 1, 0, 1)

    page.locator("#buy").click()
    page.wait_for_url(f"{fake_stripe.url}/c/pay/*")
    page.locator("#pay").click()

    page.wait_for_url(f"{live_server.url}/checkout/success/?session_id=cs_*")
    result = page.locator("#order-result")
    expect(result).to_have_attribute("data-status", "paid")
    assert fake_stripe.delivery_errors == []
    order = Order.objects.get(reference=result.get_attribute("data-order-id"))
    assert order.amount_total == products[0].unit_amount + products[2].unit_amount
    paid = order.transitions.get(to_status=OrderStatus.PAID)
    assert paid.event_id, "the webhook, delivered before the redirect, should have marked it paid"
    assert WebhookEvent.objects.filter(event_id=paid.event_id, processed_at__isnull=False).exists()

    page.locator("#my-orders-link").click()
    expect(order_articles(page)).to_have_count(1)
    expect(order_articles(page).first).to_have_attribute("data-order-id", order.reference)
    expect(order_articles(page).first).to_have_attribute("data-status", "paid")


def test_a_second_browser_sees_none_of_the_first_ones_orders(page: Page, products, new_page):
    order = demo_purchase(page, products, 1, 0, 0)
    success_url, checkout_url = page.url, f"/demo/checkout/{order.checkout_session_id}/"

    other = new_page()
    other.goto("/")
    expect(order_articles(other)).to_have_count(0)
    expect(other.locator("#my-orders")).to_contain_text("No orders yet")
    expect(other.locator("body")).not_to_contain_text(order.reference)

    other.goto(success_url)
    other.wait_for_url("**/?notice=unknown-session")
    expect(other.locator("#notice")).to_contain_text("could not find that checkout")
    assert other.goto(checkout_url).status == 404

    page.goto("/")
    expect(order_articles(page)).to_have_count(1)
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
