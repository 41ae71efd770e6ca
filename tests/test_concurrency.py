"""Races with real commits: threads (and two app-server processes) hitting one database."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connections
from django.test import Client

from devtools.servers import app_servers, db_worker, wait_until
from shop.notifications.models import Notification
from shop.orders.models import Order, OrderStatus, OrderTransition
from shop.payments.models import WebhookDelivery, WebhookEvent
from tests.conftest import WEBHOOK_URL, buy, last_order

pytestmark = pytest.mark.django_db(transaction=True)


def in_threads(count, work):
    """Run work(i) in `count` threads released at once; each thread closes its DB connection."""
    import threading

    barrier = threading.Barrier(count)

    def run(i):
        try:
            barrier.wait(timeout=30)
            return work(i)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def signed_post(client, fake, event):
    body = json.dumps(event).encode()
    return client.post(
        WEBHOOK_URL,
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=fake.sign(body),
    )


@pytest.fixture
def order(products, fake_stripe):
    client = Client()
    buy(client, products, 1, 1, 0)
    order = last_order()
    fake_stripe.complete(order.checkout_session_id)
    order.client = client
    return order


def test_forty_threads_delivering_the_same_event_pay_once(order, fake_stripe):
    event = fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)

    statuses = in_threads(40, lambda i: signed_post(Client(), fake_stripe, event).status_code)

    assert statuses == [200] * 40
    assert OrderTransition.objects.filter(order=order, to_status="paid").count() == 1
    assert WebhookEvent.objects.get().processed_at is not None
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID


def test_twenty_distinct_events_for_one_session_pay_once(order, fake_stripe):
    events = [
        fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)
        for _ in range(20)
    ]

    statuses = in_threads(20, lambda i: signed_post(Client(), fake_stripe, events[i]).status_code)

    assert statuses == [200] * 20
    assert OrderTransition.objects.filter(order=order, to_status="paid").count() == 1
    assert WebhookEvent.objects.filter(processed_at__isnull=False).count() == 20


def test_webhook_racing_the_success_page_pays_once(order, fake_stripe):
    event = fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)
    success_url = f"/checkout/success/?session_id={order.checkout_session_id}"

    def work(i):
        if i % 2:
            return signed_post(Client(), fake_stripe, event).status_code
        return order.client.get(success_url).status_code

    statuses = in_threads(10, work)

    assert statuses == [200] * 10
    assert OrderTransition.objects.filter(order=order, to_status="paid").count() == 1


def test_ten_simultaneous_buys_of_one_cart_share_one_session(products, fake_stripe):
    browser = Client()
    browser.get("/")
    buy(browser, products, 0, 0, 1)  # gives the browser its session and an open order
    cookies = browser.cookies

    def work(i):
        tab = Client()
        tab.cookies = cookies
        return buy(tab, products, 2, 1, 0)

    responses = in_threads(10, work)

    assert [r.status_code for r in responses] == [303] * 10
    assert len({r["Location"] for r in responses}) == 1
    open_sessions = [s for s in fake_stripe.sessions.values() if s["status"] == "open"]
    assert len(open_sessions) == 1
    assert Order.objects.filter(status=OrderStatus.PENDING, released_at__isnull=True).count() == 1
    assert Order.objects.filter(cart_key=last_order().cart_key).count() == 1


def test_two_tabs_with_different_carts_leave_one_payable_session(products, fake_stripe):
    browser = Client()
    buy(browser, products, 1, 0, 0)
    cookies = browser.cookies

    def work(i):
        tab = Client()
        tab.cookies = cookies
        return buy(tab, products, 0, i + 1, 0).status_code

    statuses = in_threads(6, work)

    assert set(statuses) <= {303, 409}
    assert 303 in statuses
    open_sessions = [s["id"] for s in fake_stripe.sessions.values() if s["status"] == "open"]
    (pending,) = Order.objects.filter(status=OrderStatus.PENDING, released_at__isnull=True)
    assert open_sessions == [pending.checkout_session_id]


@pytest.fixture
def two_app_servers(fake_stripe, tmp_path):
    env = {
        "STRIPE_SECRET_KEY": fake_stripe.api_key,
        "STRIPE_API_BASE": fake_stripe.url,
        "STRIPE_WEBHOOK_SECRET": fake_stripe.webhook_secret,
    }
    with app_servers(2, env, tmp_path) as urls:
        yield urls


def test_two_app_processes_receiving_duplicates_pay_once(order, fake_stripe, two_app_servers):
    event = fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)
    body = json.dumps(event).encode()
    connections.close_all()  # the servers need the database more than this thread does

    def work(i):
        url = two_app_servers[i % 2] + WEBHOOK_URL
        return requests.post(
            url,
            data=body,
            timeout=30,
            headers={
                "Content-Type": "application/json",
                "Stripe-Signature": fake_stripe.sign(body),
            },
        ).status_code

    statuses = in_threads(16, work)

    assert statuses == [200] * 16
    assert OrderTransition.objects.filter(order=order, to_status="paid").count() == 1
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID


def test_queued_deliveries_raced_through_two_app_servers_and_two_workers_pay_once(
    products, fake_stripe, tmp_path
):
    """SHOP_WEBHOOK_PROCESSING=worker end to end: two app servers take duplicates and rival
    events of three payments at once; two real workers apply them side by side."""
    env = {
        "STRIPE_SECRET_KEY": fake_stripe.api_key,
        "STRIPE_API_BASE": fake_stripe.url,
        "STRIPE_WEBHOOK_SECRET": fake_stripe.webhook_secret,
        "SHOP_WEBHOOK_PROCESSING": "worker",
        "SHOP_RECONCILE_EVERY_MINUTES": "0",
        "SHOP_OWNER_EMAIL": "owner@example.com",
    }
    orders = []
    for _ in range(3):
        buy(Client(), products, 1, 0, 1)
        orders.append(last_order())
        fake_stripe.complete(orders[-1].checkout_session_id)
    bodies = []
    for order in orders:
        first, rival = (
            json.dumps(fake_stripe.session_event("checkout.session.completed", sid)).encode()
            for sid in [order.checkout_session_id] * 2
        )
        bodies += [first] * 4 + [rival] * 2  # one event four times, another one twice
    connections.close_all()

    with app_servers(2, env, tmp_path) as urls:

        def deliver(i):
            return requests.post(
                urls[i % 2] + WEBHOOK_URL,
                data=bodies[i],
                timeout=30,
                headers={
                    "Content-Type": "application/json",
                    "Stripe-Signature": fake_stripe.sign(bodies[i]),
                },
            ).status_code

        statuses = in_threads(len(bodies), deliver)
    assert statuses == [202] * len(bodies)  # kept and queued; nothing applied yet
    assert not Order.objects.filter(status=OrderStatus.PAID).exists()

    with db_worker("worker-a", env, tmp_path), db_worker("worker-b", env, tmp_path):
        wait_until(lambda: not WebhookDelivery.objects.filter(kind="").exists(), timeout=120)

    for order in orders:
        order.refresh_from_db()
        assert order.status == OrderStatus.PAID
        assert OrderTransition.objects.filter(order=order, to_status="paid").count() == 1
        assert Notification.objects.filter(order=order).count() == 2  # customer, owner: once
    kinds = sorted(WebhookDelivery.objects.values_list("kind", flat=True))
    assert kinds == sorted(["applied"] * 3 + ["no_change"] * 3 + ["duplicate"] * 12)
    assert WebhookEvent.objects.filter(processed_at__isnull=False).count() == 6


@pytest.mark.postgres_only
def test_connections_dropped_by_the_database_fail_one_request_safely_then_recover(
    order, fake_stripe, tmp_path
):
    """Without CONN_HEALTH_CHECKS a worker learns of a dead connection by using it."""
    env = {
        "STRIPE_SECRET_KEY": fake_stripe.api_key,
        "STRIPE_API_BASE": fake_stripe.url,
        "STRIPE_WEBHOOK_SECRET": fake_stripe.webhook_secret,
    }
    event = fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json", "Stripe-Signature": fake_stripe.sign(body)}
    with app_servers(1, env, tmp_path, workers=1, threads=1) as (url,):
        assert requests.get(url + "/healthz", timeout=30).status_code == 200
        with connections["default"].cursor() as cursor:  # as a database restart would
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database()"
            )

        statuses = [
            requests.post(url + WEBHOOK_URL, data=body, headers=headers, timeout=30).status_code
            for _ in range(2)
        ]

    assert statuses == [500, 200]  # Stripe retries the first
    assert OrderTransition.objects.filter(order=order, to_status="paid").count() == 1
    assert WebhookDelivery.objects.filter(event_id=event["id"]).count() == 1


def test_refund_delivered_at_the_same_instant_as_its_payment_always_ends_refunded(
    products, fake_stripe
):
    """The payment and its full refund, applied in two concurrent transactions: the refund
    must never be lost to the payment's uncommitted state (both lock the payment's row)."""
    rounds = 200 if connections["default"].vendor == "postgresql" else 20
    orders = []
    for _ in range(rounds):
        buy(Client(), products, 1, 0, 0)
        order = last_order()
        fake_stripe.complete(order.checkout_session_id)
        orders.append(order)
    import threading

    barrier = threading.Barrier(2)

    def deliver(event):
        barrier.wait(timeout=30)
        try:
            return signed_post(Client(), fake_stripe, event).status_code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=2) as pool:
        for order in orders:
            paid = fake_stripe.session_event(
                "checkout.session.completed", order.checkout_session_id
            )
            refunded = fake_stripe.charge_refunded(order.checkout_session_id)
            statuses = list(pool.map(deliver, [paid, refunded]))
            assert statuses == [200, 200]

    statuses = list(
        Order.objects.filter(pk__in=[o.pk for o in orders]).values_list("status", flat=True)
    )
    assert statuses == [OrderStatus.REFUNDED] * rounds
