"""Every endpoint costs a constant number of SQL queries, whatever the size of the data."""

import re

import pytest
from django.db import connection
from django.test import Client

from shop.catalogue.models import Product
from shop.orders.models import Order
from tests.conftest import buy, last_order, post_event, run_tasks
from tests.test_pages import _paid_orders

pytestmark = pytest.mark.django_db


@pytest.fixture
def big_history(client, products, fake_stripe):
    buy(client, products, 1, 0, 0)
    _paid_orders(last_order().customer_key, 200, products[0])
    _paid_orders("someone-else", 200, products[1])


def test_storefront_first_visit_queries(products, django_assert_num_queries, big_history):
    with django_assert_num_queries(1):  # products; no session row is read or written
        Client().get("/")


def test_storefront_returning_browser_queries(client, django_assert_num_queries, big_history):
    # Products, the page's order ids and statuses, then (to render them) the orders and lines.
    with django_assert_num_queries(4):
        first = client.get("/").content.decode()
    older = re.search(r"\?before=\d+", first).group(0)
    # Products cached; the next page: when its first order's predecessor was paid, the ids,
    # then the orders and lines.
    with django_assert_num_queries(4):
        client.get("/" + older)
    with django_assert_num_queries(1):  # the same page again: its ids and statuses only
        client.get("/")
    with django_assert_num_queries(1):  # a cursor that is not one of this browser's orders
        assert "No older orders" in client.get("/?before=999999").content.decode()


def test_checkout_queries_for_a_new_browser(products, fake_stripe, django_assert_num_queries):
    # Products; in one transaction (a savepoint pair here) the browser's pending orders, the
    # new order and its lines; after Stripe's answer, the session saved on the order.
    with django_assert_num_queries(7):
        assert buy(Client(), products, 0, 2, 0).status_code == 303


def test_checkout_queries(client, products, fake_stripe, big_history, django_assert_num_queries):
    # A new cart also releases the old order, then expires its session and records that.
    with django_assert_num_queries(11):
        assert buy(client, products, 0, 2, 0).status_code == 303
    with django_assert_num_queries(4):  # the same cart again: no insert, no Stripe call
        assert buy(client, products, 0, 2, 0).status_code == 303


# Limited stock: what holding, releasing and selling add. Products of unlimited stock (the pins
# above) add nothing: the order's products' limits come with the order's own read.


@pytest.fixture
def limited(products):
    Product.objects.filter(pk__in=[products[1].pk, products[2].pk]).update(stock=50)


def test_checkout_queries_with_limited_stock(
    products, fake_stripe, limited, django_assert_num_queries
):
    # The 7 above, plus in the transaction: one conditional UPDATE per limited product (held =
    # held + q where enough is available), and the order's hold movements in one INSERT.
    with django_assert_num_queries(9):
        assert buy(Client(), products, 1, 2, 0).status_code == 303
    with django_assert_num_queries(10):  # two limited products: one UPDATE each
        assert buy(Client(), products, 1, 2, 3).status_code == 303


def test_checkout_queries_switching_carts_with_limited_stock(
    client, products, fake_stripe, limited, django_assert_num_queries
):
    buy(client, products, 0, 1, 0)
    # The 11 above; the new order's hold (UPDATE, INSERT of its movement); the old order's
    # release when its expiry is recorded (its hold movements read, one UPDATE per product,
    # the release movements' INSERT).
    with django_assert_num_queries(16):
        assert buy(client, products, 0, 2, 0).status_code == 303
    with django_assert_num_queries(4):  # the same cart again: its order and hold as they are
        assert buy(client, products, 0, 2, 0).status_code == 303


def test_checkout_refused_for_want_of_stock_queries(
    products, fake_stripe, limited, django_assert_num_queries
):
    Product.objects.filter(pk=products[1].pk).update(stock=1)
    # Products; the transaction (savepoint, the browser's orders, the order's INSERT, the UPDATE
    # that finds too few, rollback, release); this browser's own holds; overdue holds of the
    # product looked for; the products as they are now, for the message; the page's products.
    with django_assert_num_queries(11):
        assert buy(Client(), products, 0, 2, 0).status_code == 409


def test_webhook_queries_with_limited_stock(
    client, products, fake_stripe, limited, django_assert_num_queries
):
    buy(client, products, 0, 2, 0)
    order = last_order()
    fake_stripe.complete(order.checkout_session_id)
    event = fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)
    # The 12 of an unlimited order's payment (below), plus the order's lines with their stock
    # and hold, one UPDATE per product (held - q, sold + q) and the sale movements' INSERT.
    with django_assert_num_queries(15):
        assert post_event(client, fake_stripe, event).status_code == 200
    another = fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)
    # Another event for the same payment: the order read says paid, so no compare-and-set and
    # no stock read; the payment's row is still locked (a refund may be racing it).
    with django_assert_num_queries(8):
        assert post_event(client, fake_stripe, another).status_code == 200

    buy(Client(), products, 0, 3, 0)
    order = last_order()
    fake_stripe.expire(order.checkout_session_id)
    event = fake_stripe.session_event("checkout.session.expired", order.checkout_session_id)
    # The delivery, the savepoint pair, the event's row, the order, its compare-and-set and
    # transition, the outcomes (9); the release: hold movements read, one UPDATE per product,
    # one INSERT.
    with django_assert_num_queries(12):
        assert post_event(client, fake_stripe, event).status_code == 200


def test_webhook_queries(client, products, fake_stripe, big_history, django_assert_num_queries):
    buy(client, products, 0, 0, 1)
    order = last_order()
    fake_stripe.complete(order.checkout_session_id)
    event = fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)

    # The delivery, kept with "applied already?" asked in the same INSERT; then in one
    # transaction (a savepoint pair here): the event's row, upserted and locked in one
    # statement; the order; the payment's row, upserted and locked (where its refunds meet
    # it); the order's update and transition; the event's and the delivery's outcome.
    # Becoming paid adds 2: the two emails it owes (customer, owner) in one insert and their two
    # tasks in another, written in the same transaction so a rolled-back payment owes nothing.
    with django_assert_num_queries(12):
        assert post_event(client, fake_stripe, event).status_code == 200
    with django_assert_num_queries(1):  # the duplicate: its delivery, settled as it is kept
        assert post_event(client, fake_stripe, event).status_code == 200


def test_webhook_queries_when_the_worker_applies_them(
    client, products, fake_stripe, big_history, django_assert_num_queries, settings
):
    settings.SHOP_WEBHOOK_PROCESSING = "worker"
    buy(client, products, 0, 0, 1)
    order = last_order()
    fake_stripe.complete(order.checkout_session_id)
    event = fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)

    # The delivery, with "applied already?" asked in the same INSERT, and the task that will
    # process it: one statement on PostgreSQL; two in a transaction (a savepoint pair here) on
    # SQLite, which cannot INSERT in a WITH.
    postgres = connection.vendor == "postgresql"
    with django_assert_num_queries(1 if postgres else 4):
        assert post_event(client, fake_stripe, event).status_code == 202
    run_tasks()
    # The duplicate of an applied event: the same INSERT alone.
    with django_assert_num_queries(1 if postgres else 3):
        assert post_event(client, fake_stripe, event).status_code == 200


def test_success_page_queries(
    client, products, fake_stripe, big_history, django_assert_num_queries
):
    buy(client, products, 0, 0, 1)
    order = last_order()
    fake_stripe.complete(order.checkout_session_id)

    # This browser's order; then the shared fulfilment (the order by its reference, the
    # payment's row upserted and locked, the compare-and-set, its transition, and the emails
    # it owes: one insert of the records, one of their tasks); the order and its lines for the
    # page.
    with django_assert_num_queries(9):
        client.get(f"/checkout/success/?session_id={order.checkout_session_id}")


def test_demo_checkout_queries(client, products, demo, django_assert_num_queries):
    response = buy(client, products, 1, 0, 0)
    _paid_orders(last_order().customer_key, 50, products[0])
    _paid_orders("someone-else", 50, products[1])

    with django_assert_num_queries(2):  # the order, its lines
        assert client.get(response["Location"]).status_code == 200
    # The order; the demo provider's own read of it; the shared fulfilment (the order by its
    # reference, the payment's row upserted and locked, the compare-and-set, its transition,
    # the emails it owes: their records in one insert, their tasks in another); the order again.
    with django_assert_num_queries(9):
        assert (
            client.post(
                response["Location"], {"action": "pay", "email": "jo@example.com"}
            ).status_code
            == 303
        )


def test_healthz_queries(client, db, django_assert_num_queries):
    with django_assert_num_queries(1):
        assert client.get("/healthz").status_code == 200


def test_healthz_worker_queries(client, db, django_assert_num_queries):
    # The heartbeats, then the due tasks: each one aggregate; then, for a few seconds, none.
    with django_assert_num_queries(2):
        first = client.get("/healthz/worker")
    with django_assert_num_queries(0):
        again = client.get("/healthz/worker")
    assert first.status_code == again.status_code == 503  # no worker in this test
    assert first.content == again.content


def test_owner_overview_queries(admin_client, products, big_history, django_assert_num_queries):
    from tests.test_overview import OVERVIEW_URL

    Order.objects.filter(pk__in=Order.objects.order_by("id").values("id")[:3]).update(
        needs_review=True
    )
    # The admin's session and user; then one statement per figure: sales per day, refunds per
    # day, orders by status, this month's refunds, this month's disputes, orders needing review
    # (their total counted in the same statement), best sellers; and the worker's health
    # (heartbeats, due tasks).
    with django_assert_num_queries(11):
        assert admin_client.get(OVERVIEW_URL).status_code == 200
