import re
import time
from datetime import timedelta

import pytest

from shop.catalogue.models import Product
from shop.orders.models import Order, OrderLine, OrderStatus
from tests.conftest import buy, cart_form, last_order

pytestmark = pytest.mark.django_db


def test_buy_creates_pending_order_and_redirects_to_stripe_session(client, products, fake_stripe):
    response = buy(client, products, 2, 0, 3)

    order = last_order()
    assert response.status_code == 303
    assert response["Location"] == fake_stripe.sessions[order.checkout_session_id]["url"]
    assert order.status == OrderStatus.PENDING
    assert order.amount_total == 2 * products[0].unit_amount + 3 * products[2].unit_amount
    assert [(line.product_id, line.quantity, line.unit_amount) for line in order.lines.all()] == [
        (products[0].pk, 2, products[0].unit_amount),
        (products[2].pk, 3, products[2].unit_amount),
    ]


def test_checkout_session_parameters_follow_stripe_rules(client, products, fake_stripe):
    before = time.time()
    buy(client, products, 1, 2, 0)
    order = last_order()

    (request,) = fake_stripe.requests_to("POST", "/v1/checkout/sessions")
    params = request.params
    assert params["mode"] == "payment"
    assert params["client_reference_id"] == order.reference
    assert params["metadata"] == {"order_id": order.reference}
    assert params["success_url"].endswith("/checkout/success/?session_id={CHECKOUT_SESSION_ID}")
    assert params["cancel_url"].startswith("http://testserver/")
    assert 30 * 60 <= int(params["expires_at"]) - before <= 60 * 60
    assert params["line_items"] == [
        {
            "price_data": {
                "currency": "usd",
                "unit_amount": str(products[0].unit_amount),
                "product_data": {"name": products[0].name},
            },
            "quantity": "1",
        },
        {
            "price_data": {
                "currency": "usd",
                "unit_amount": str(products[1].unit_amount),
                "product_data": {"name": products[1].name},
            },
            "quantity": "2",
        },
    ]
    assert request.idempotency_key == f"checkout-session-{order.reference}"


def test_server_prices_the_cart_ignoring_prices_sent_by_the_browser(client, products, fake_stripe):
    form = cart_form(products, 1, 0, 0) | {"price": "1", "amount_total": "1", "unit_amount": "1"}
    client.post("/checkout/", form)

    assert last_order().amount_total == products[0].unit_amount


def test_checkout_charges_the_price_in_the_database_not_the_storefront_cache(
    client, products, fake_stripe
):
    assert "$12.50" in client.get("/").content.decode()  # the product list is now cached
    # A price change that reaches no cache (another app server's edit, a bulk update).
    Product.objects.filter(pk=products[0].pk).update(unit_amount=1300)

    buy(client, products, 2, 0, 0)

    order = last_order()
    assert order.amount_total == 2600
    assert order.lines.get().unit_amount == 1300
    (created,) = fake_stripe.requests_to("POST", "/v1/checkout/sessions")
    assert created.params["line_items"][0]["price_data"]["unit_amount"] == "1300"


def test_same_cart_again_reuses_the_open_session(client, products, fake_stripe):
    first = buy(client, products, 1, 1, 0)
    second = buy(client, products, 1, 1, 0)

    assert second.status_code == 303
    assert second["Location"] == first["Location"]
    assert Order.objects.count() == 1
    assert len(fake_stripe.requests_to("POST", "/v1/checkout/sessions")) == 1


def test_different_cart_expires_the_previous_session_first(client, products, fake_stripe):
    buy(client, products, 1, 0, 0)
    first = last_order()
    buy(client, products, 2, 0, 0)
    second = last_order()

    first.refresh_from_db()
    assert first.status == OrderStatus.EXPIRED
    assert fake_stripe.sessions[first.checkout_session_id]["status"] == "expired"
    assert second.status == OrderStatus.PENDING
    paths = [r.path for r in fake_stripe.requests if r.method == "POST"]
    assert paths == [
        "/v1/checkout/sessions",
        f"/v1/checkout/sessions/{first.checkout_session_id}/expire",
        "/v1/checkout/sessions",
    ]


def test_different_cart_after_paying_the_previous_one_keeps_it_paid(client, products, fake_stripe):
    buy(client, products, 1, 0, 0)
    first = last_order()
    fake_stripe.complete(first.checkout_session_id)  # paid, but the webhook has not arrived yet

    response = buy(client, products, 0, 1, 0)

    first.refresh_from_db()
    assert first.status == OrderStatus.PAID
    assert response.status_code == 303
    assert last_order().status == OrderStatus.PENDING


def test_same_cart_after_a_crash_before_stripe_answered_gets_a_new_order(
    client, products, fake_stripe
):
    buy(client, products, 1, 0, 0)
    crashed = last_order()
    Order.objects.filter(pk=crashed.pk).update(
        checkout_session_id=None,
        checkout_url="",
        created_at=crashed.created_at - timedelta(minutes=5),
    )

    response = buy(client, products, 1, 0, 0)

    assert response.status_code == 303
    crashed.refresh_from_db()
    assert crashed.status == OrderStatus.EXPIRED
    assert last_order().pk != crashed.pk


def test_same_cart_after_its_session_nearly_expired_gets_a_new_session(
    client, products, fake_stripe
):
    buy(client, products, 1, 0, 0)
    first = last_order()
    Order.objects.filter(pk=first.pk).update(
        checkout_expires_at=first.created_at + timedelta(minutes=5)
    )

    buy(client, products, 1, 0, 0)

    assert Order.objects.count() == 2
    first.refresh_from_db()
    assert first.status == OrderStatus.EXPIRED


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"quantity-1": "0", "quantity-2": "0", "quantity-3": "0"},
        {"quantity-1": "-1"},
        {"quantity-1": "100"},
        {"quantity-1": "1.5"},
        {"quantity-1": "abc"},
        {"quantity-1": "1e2"},
        {"quantity-1": "٣"},  # a digit, but not an ASCII one
        {"quantity-1": " 1 2"},
        {"quantity-999": "1"},
        {"quantity-x": "1"},
        {"quantity-": "1"},
    ],
)
def test_bad_cart_is_rejected_with_400_and_nothing_is_stored(client, products, fake_stripe, form):
    response = client.post("/checkout/", form)

    assert response.status_code == 400
    assert b'id="cart-error"' in response.content
    assert Order.objects.count() == 0
    assert OrderLine.objects.count() == 0
    assert fake_stripe.requests == []
    assert "sessionid" not in response.cookies
    assert "shop_customer" not in response.cookies


def test_duplicate_quantity_field_is_rejected(client, products, fake_stripe):
    response = client.post(
        "/checkout/",
        f"quantity-{products[0].pk}=1&quantity-{products[0].pk}=2",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 400
    assert Order.objects.count() == 0


def test_inactive_product_cannot_be_bought(client, products, fake_stripe):
    products[0].active = False
    products[0].save()

    response = buy(client, products, 1, 0, 0)

    assert response.status_code == 400
    assert Order.objects.count() == 0


def test_checkout_requires_csrf_token(products, fake_stripe):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    response = client.post("/checkout/", cart_form(products, 1, 0, 0))

    assert response.status_code == 403
    assert Order.objects.count() == 0
    assert fake_stripe.requests == []


def test_checkout_with_csrf_token_from_the_page_works(products, fake_stripe):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    page = client.get("/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(
        "/checkout/", cart_form(products, 1, 0, 0) | {"csrfmiddlewaretoken": token}
    )

    assert response.status_code == 303


def test_checkout_only_accepts_post(client, products):
    assert client.get("/checkout/").status_code == 405


@pytest.mark.parametrize(
    "body",
    [
        "quantity-1=0&quantity-01=1",  # a second name for product 1
        "quantity-" + "1" * 4301 + "=1",  # more digits than int() accepts
    ],
)
def test_field_names_other_than_the_forms_own_are_rejected(client, products, demo, body):
    response = client.post("/checkout/", body, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 400
    assert Order.objects.count() == 0


@pytest.mark.parametrize("charset", ["rot13", "hex", "base64"])
def test_body_in_a_non_text_charset_is_a_400(client, products, demo, charset):
    response = client.generic(
        "POST",
        "/checkout/",
        b'--x\r\nContent-Disposition: form-data; name="quantity-1"\r\n\r\n1\r\n--x--\r\n',
        content_type=f"multipart/form-data; boundary=x; charset={charset}",
    )

    assert response.status_code == 400
    assert Order.objects.count() == 0


def test_non_text_charset_with_a_query_string_is_a_400_at_the_wsgi_entry_point(db):
    import io

    from config.wsgi import application

    statuses = []
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/checkout/",
        "QUERY_STRING": "a=1",
        "CONTENT_TYPE": "text/plain; charset=rot13",
        "CONTENT_LENGTH": "0",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
    }
    application(environ, lambda status, headers: statuses.append(status))

    assert statuses == ["400 Bad Request"]
