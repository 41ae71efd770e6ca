"""Which browser is this: the signed customer cookie, and the storefront shared between browsers."""

import re

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client

from shop.catalogue.models import Product
from shop.web.customer import COOKIE_NAME
from tests.conftest import buy, last_order, pay

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def test_first_checkout_gives_a_signed_customer_cookie_and_writes_no_session(
    client, products, fake_stripe
):
    response = buy(client, products, 1, 0, 0)

    assert response.status_code == 303
    value = response.cookies[COOKIE_NAME].value
    assert last_order().customer_key in value  # signed, not secret: the key itself is random
    assert value != last_order().customer_key
    assert Session.objects.count() == 0


def test_returning_browser_keeps_its_key_and_gets_no_new_cookie(client, products, fake_stripe):
    buy(client, products, 1, 0, 0)
    first = last_order()

    response = buy(client, products, 0, 1, 0)

    assert last_order().customer_key == first.customer_key
    assert COOKIE_NAME not in response.cookies


def test_tampered_customer_cookie_is_a_stranger(client, products, fake_stripe):
    buy(client, products, 1, 0, 0)
    order = last_order()
    pay(client, fake_stripe, order)
    value = client.cookies[COOKIE_NAME].value
    other = "y" if order.customer_key.startswith("x") else "x"  # a key that differs, always
    forged = value.replace(order.customer_key, other + order.customer_key[1:])
    for cookie in (forged, order.customer_key, value + "x"):
        stranger = Client()
        stranger.cookies[COOKIE_NAME] = cookie

        assert order.reference not in stranger.get("/").content.decode()


def test_a_browser_with_an_admin_session_but_no_customer_cookie_reads_no_session(
    admin_client, products, django_assert_num_queries
):
    assert settings.SESSION_COOKIE_NAME in admin_client.cookies
    admin_client.get("/")  # the product list is cached from here on

    with django_assert_num_queries(0):
        assert admin_client.get("/").status_code == 200


def test_customer_cookie_is_secure_when_https_is_on(client, products, demo, settings):
    settings.SESSION_COOKIE_SECURE = True

    response = buy(client, products, 1, 0, 0)

    assert response.cookies[COOKIE_NAME]["secure"]


def test_shared_storefront_gives_each_browser_its_own_token_and_orders(products, fake_stripe):
    alice, bob = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    alice_page = alice.get("/").content.decode()
    bob_page = bob.get("/").content.decode()
    alice_token = TOKEN.search(alice_page).group(1)
    bob_token = TOKEN.search(bob_page).group(1)
    assert alice_token != bob_token
    assert "slot-" not in alice_page + bob_page

    form = {f"quantity-{products[0].pk}": "1", "csrfmiddlewaretoken": alice_token}
    assert alice.post("/checkout/", form).status_code == 303
    order = last_order()
    pay(alice, fake_stripe, order)

    assert order.reference in alice.get("/").content.decode()
    assert order.reference not in bob.get("/").content.decode()
    bob_form = form | {"csrfmiddlewaretoken": TOKEN.search(bob.get("/").content.decode()).group(1)}
    assert bob.post("/checkout/", bob_form).status_code == 303


def test_storefront_shows_a_new_price_as_soon_as_the_product_list_is_reread(client, products, demo):
    assert "$12.50" in client.get("/").content.decode()

    product = Product.objects.get(unit_amount=1250)
    product.unit_amount = 1300
    product.save()  # drops the cached product list in this process

    page = client.get("/").content.decode()
    assert "$13.00" in page
    assert "$12.50" not in page


def test_demo_and_stripe_mode_pages_are_not_shared(client, products, demo, settings):
    assert 'id="demo-banner"' in client.get("/").content.decode()

    settings.STRIPE_SECRET_KEY = "sk_test_" + "x" * 24

    assert 'id="demo-banner"' not in client.get("/").content.decode()


def test_storefront_tells_shared_caches_it_depends_on_cookies(client, products, fake_stripe):
    buy(client, products, 1, 0, 0)

    for visitor in (client, Client()):
        response = visitor.get("/")
        assert "Cookie" in response["Vary"]
