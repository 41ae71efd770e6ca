"""The order page an emailed link opens: the order to whoever holds the link, nothing to anyone
else."""

import pytest
from django.test import Client

from shop.orders.links import order_link_token
from tests.conftest import buy, last_order, pay, post_event

pytestmark = pytest.mark.django_db


def order_url(reference, token):
    return f"/orders/{reference}/?token={token}"


@pytest.fixture
def paid_order(client, products, fake_stripe):
    buy(client, products, 2, 0, 1)
    order = last_order()
    pay(client, fake_stripe, order)
    order.refresh_from_db()
    return order


def test_the_link_shows_the_order_in_any_browser(paid_order, products):
    response = Client().get(
        order_url(paid_order.reference, order_link_token(reference=paid_order.reference))
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-order-id="{paid_order.reference}" data-status="paid"' in html
    assert f"{products[0].name} × 2" in html and f"{products[2].name} × 1" in html
    total = paid_order.amount_total
    assert f"${total // 100}.{total % 100:02d}" in html
    # Nothing about who bought it or how.
    for secret in (
        paid_order.email,
        paid_order.customer_key,
        paid_order.checkout_session_id,
        paid_order.payment_intent_id,
    ):
        assert secret not in html
    assert response["X-Robots-Tag"] == "noindex"
    assert "no-cache" in response["Cache-Control"]


def test_the_page_follows_the_order_status(client, paid_order, fake_stripe):
    post_event(client, fake_stripe, fake_stripe.charge_refunded(paid_order.checkout_session_id))

    html = (
        Client()
        .get(order_url(paid_order.reference, order_link_token(reference=paid_order.reference)))
        .content.decode()
    )
    assert 'data-status="refunded"' in html


def bad_links(order, other):
    token = order_link_token(reference=order.reference)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    return {
        "altered token": order_url(order.reference, flipped),
        "another order's token": order_url(
            order.reference, order_link_token(reference=other.reference)
        ),
        "no token": f"/orders/{order.reference}/",
        "empty token": order_url(order.reference, ""),
        "token with a separator": order_url(order.reference, f"x:{token}"),
        "unknown reference": order_url(
            "ord_000000000000000000000000",
            order_link_token(reference="ord_000000000000000000000000"),
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "altered token",
        "another order's token",
        "no token",
        "empty token",
        "token with a separator",
        "unknown reference",
    ],
)
def test_a_link_that_is_not_genuine_is_a_plain_404(paid_order, products, case):
    other_client = Client()
    buy(other_client, products, 1, 0, 0)
    other = last_order()

    response = Client().get(bad_links(paid_order, other)[case])

    assert response.status_code == 404
    html = response.content.decode()
    assert "We could not find that page" in html
    assert paid_order.reference not in html and other.reference not in html


def test_a_forged_link_costs_no_query(paid_order, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert Client().get(order_url(paid_order.reference, "forged")).status_code == 404


def test_a_genuine_link_costs_two_queries(paid_order, django_assert_num_queries):
    url = order_url(paid_order.reference, order_link_token(reference=paid_order.reference))
    with django_assert_num_queries(2):  # the order, its lines
        assert Client().get(url).status_code == 200


def test_links_survive_a_key_rotation(paid_order, settings):
    url = order_url(paid_order.reference, order_link_token(reference=paid_order.reference))
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"

    assert Client().get(url).status_code == 200
