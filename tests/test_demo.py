import re

import pytest
from django.test import Client

from shop.orders.models import OrderStatus
from tests.conftest import buy, last_order

pytestmark = pytest.mark.django_db
PAY = {"action": "pay", "email": "Jo@Example.com"}


def test_demo_purchase_end_to_end(client, products, demo):
    page = client.get("/").content.decode()
    assert 'id="demo-banner"' in page

    response = buy(client, products, 1, 1, 1)
    order = last_order()
    assert response.status_code == 303
    assert response["Location"] == f"/demo/checkout/{order.checkout_session_id}/"

    checkout = client.get(response["Location"]).content.decode()
    assert "Demo — no real payment" in checkout
    total = sum(p.unit_amount for p in products)
    assert f"${total // 100}.{total % 100:02d}" in checkout

    paid = client.post(response["Location"], PAY)
    assert paid.status_code == 303
    success = client.get(paid["Location"])
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    assert order.transitions.get().cause == "demo_payment"
    assert order.email == "jo@example.com"  # what the page collected, as the shop compares it
    assert 'data-status="paid"' in success.content.decode()
    assert (
        f'data-order-id="{order.reference}" data-status="paid"' in client.get("/").content.decode()
    )


def test_demo_cancel_leaves_order_unpaid(client, products, demo):
    response = buy(client, products, 1, 0, 0)
    cancelled = client.post(response["Location"], {"action": "cancel"})

    assert cancelled["Location"] == "/?notice=cancelled"
    assert last_order().status == OrderStatus.PENDING


def test_demo_pay_twice_is_one_payment(client, products, demo):
    response = buy(client, products, 1, 0, 0)
    client.post(response["Location"], PAY)
    client.post(response["Location"], PAY)

    assert last_order().transitions.filter(to_status="paid").count() == 1


def test_demo_checkout_of_another_browser_is_not_found(client, products, demo):
    response = buy(client, products, 1, 0, 0)

    stranger = Client()
    stranger.get("/")
    assert stranger.get(response["Location"]).status_code == 404
    assert stranger.post(response["Location"], PAY).status_code == 404
    assert last_order().status == OrderStatus.PENDING


def test_demo_pages_do_not_exist_in_stripe_mode(client, products, fake_stripe):
    buy(client, products, 1, 0, 0)
    order = last_order()
    response = client.post(f"/demo/checkout/{order.checkout_session_id}/", PAY)

    assert response.status_code == 404
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING


def test_demo_mode_makes_no_network_calls(client, products, demo, fake_stripe_server, settings):
    # Everything points at a live Stripe stand-in, so a call from demo mode would be seen.
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_API_BASE = fake_stripe_server.url
    fake_stripe_server.reset()
    response = buy(client, products, 1, 0, 0)
    client.post(response["Location"], PAY)
    client.get("/")

    assert last_order().status == OrderStatus.PAID
    assert fake_stripe_server.requests == []


@pytest.mark.parametrize("email", ["", "not-an-address", "jo@", "a" * 250 + "@example.com"])
def test_demo_pay_needs_a_valid_email_and_changes_nothing_without_one(
    client, products, demo, email
):
    response = buy(client, products, 1, 0, 0)

    page = client.post(response["Location"], {"action": "pay", "email": email})

    assert page.status_code == 400
    html = page.content.decode()
    assert 'id="email-error"' in html and 'aria-invalid="true"' in html
    assert re.search(r'id="email-error" role="alert">(Enter|That is longer)', html)
    order = last_order()
    assert (order.status, order.email) == (OrderStatus.PENDING, "")
    assert not order.transitions.exists()


def test_demo_cancel_needs_no_email(client, products, demo):
    response = buy(client, products, 1, 0, 0)

    assert client.post(response["Location"], {"action": "cancel"}).status_code == 303
