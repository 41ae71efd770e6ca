"""One confirmation and one owner notice per paid order, whoever races to mark it paid: real
commits, threads and two app-server processes on one database."""

import json
import time

import pytest
import requests
from django.db import connections, transaction
from django.test import Client
from django_tasks_db.models import DBTaskResult

from devtools.servers import app_servers
from shop.notifications.models import Notification, NotificationStatus
from shop.orders.models import OrderStatus
from shop.orders.reconcile import payments_reconcile
from shop.orders.services import order_transition
from tests.conftest import WEBHOOK_URL, buy, last_order, run_tasks
from tests.test_concurrency import in_threads, signed_post

pytestmark = pytest.mark.django_db(transaction=True)
CUSTOMER, OWNER = "customer@example.com", "owner@example.com"


@pytest.fixture
def order(products, fake_stripe):
    client = Client()
    buy(client, products, 1, 1, 0)
    order = last_order()
    fake_stripe.complete(order.checkout_session_id)
    order.client = client
    return order


def assert_one_of_each(smtp, order):
    assert sorted(m.recipients for m in smtp.received) == [(CUSTOMER,), (OWNER,)]
    assert all(order.reference in m.subject for m in smtp.received)
    assert Notification.objects.filter(order=order).count() == 2


def test_webhook_success_page_and_reconcile_racing_send_one_of_each(order, fake_stripe, smtp):
    event = fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)
    success_url = f"/checkout/success/?session_id={order.checkout_session_id}"

    def work(i):
        if i % 3 == 0:
            return signed_post(Client(), fake_stripe, event).status_code
        if i % 3 == 1:
            return order.client.get(success_url).status_code
        return payments_reconcile().errors

    results = in_threads(12, work)

    assert results.count(200) == 8 and results.count([]) == 4
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    run_tasks()
    run_tasks()  # a second worker pass finds nothing more to send
    assert_one_of_each(smtp, order)


def test_twenty_deliveries_of_one_event_across_two_app_servers_send_one_of_each(
    order, fake_stripe, smtp, tmp_path
):
    env = {
        "STRIPE_SECRET_KEY": fake_stripe.api_key,
        "STRIPE_API_BASE": fake_stripe.url,
        "STRIPE_WEBHOOK_SECRET": fake_stripe.webhook_secret,
        "SHOP_OWNER_EMAIL": OWNER,
    }
    event = fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)
    body = json.dumps(event).encode()
    with app_servers(2, env, tmp_path) as urls:
        connections.close_all()  # the servers need the database more than this thread does

        def work(i):
            return requests.post(
                urls[i % 2] + WEBHOOK_URL,
                data=body,
                timeout=60,
                headers={
                    "Content-Type": "application/json",
                    "Stripe-Signature": fake_stripe.sign(body),
                },
            ).status_code

        statuses = in_threads(20, work)

    assert statuses == [200] * 20
    assert DBTaskResult.objects.filter(status="READY").count() == 2
    run_tasks()
    assert_one_of_each(smtp, order)


def test_a_rolled_back_payment_enqueues_and_sends_nothing(order, smtp):
    with pytest.raises(RuntimeError), transaction.atomic():
        order_transition(order=order, to=OrderStatus.PAID, cause="test", email=CUSTOMER)
        assert DBTaskResult.objects.count() == 2  # written inside the transaction…
        raise RuntimeError("the rest of the change failed")

    assert DBTaskResult.objects.count() == 0  # …and gone with it
    assert not Notification.objects.exists()
    assert run_tasks() == 0
    assert smtp.received == []
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING


def test_smtp_refusing_for_a_while_delivers_once_after_it_comes_back(
    order, fake_stripe, smtp, settings
):
    settings.SHOP_EMAIL_RETRY_FIRST_SECONDS = settings.SHOP_EMAIL_RETRY_MAX_SECONDS = 0.3
    smtp.refuse()
    event = fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)
    assert signed_post(Client(), fake_stripe, event).status_code == 200

    deadline = time.monotonic() + 60
    while Notification.objects.filter(status=NotificationStatus.QUEUED).exists():
        assert time.monotonic() < deadline
        if smtp.attempts >= 6:  # three refused attempts each, then the server is back
            smtp.refuse(False)
        run_tasks()
        time.sleep(0.1)

    assert_one_of_each(smtp, order)
    assert all(n.attempts >= 3 for n in Notification.objects.all())
    assert DBTaskResult.objects.filter(status="FAILED").count() >= 4  # each refusal recorded
