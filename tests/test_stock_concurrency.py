"""Limited stock under races, with real commits: browsers on two app servers racing for the
last units, payments and expiries in any order, and one expiry arriving three ways at once."""

import json
import random
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connections
from django.db.models import Sum
from django.test import Client

from devtools.servers import app_servers
from shop.catalogue.models import Product, StockMovement
from shop.orders.models import Order, OrderLine, OrderStatus, OrderTransition
from shop.orders.reconcile import payments_reconcile
from shop.orders.services import orders_expire_overdue
from shop.refunds.models import Refund
from tests.conftest import WEBHOOK_URL, buy, last_order
from tests.test_concurrency import in_threads, signed_post

pytestmark = pytest.mark.django_db(transaction=True)

STOCK = 10
CSRF_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@pytest.fixture
def mug(products):
    Product.objects.filter(pk=products[1].pk).update(stock=STOCK)
    return products[1]


@pytest.fixture
def two_app_servers(fake_stripe, tmp_path):
    env = {
        "STRIPE_SECRET_KEY": fake_stripe.api_key,
        "STRIPE_API_BASE": fake_stripe.url,
        "STRIPE_WEBHOOK_SECRET": fake_stripe.webhook_secret,
        # Every browser here comes from 127.0.0.1: the limits would refuse before stock does.
        "CHECKOUT_RATE_PER_IP": "100000/m",
        "CHECKOUT_RATE_PER_BROWSER": "100000/m",
        # 60 requests at once on a small shared machine: a slow answer of the fake is no fault.
        "STRIPE_TIMEOUT_SECONDS": "30",
    }
    with app_servers(2, env, tmp_path) as urls:
        yield urls


class Browser:
    """A customer's browser on one of the app servers: cookies, and the form's CSRF token."""

    def __init__(self, server):
        self.server = server
        self.session = requests.Session()
        page = self.session.get(server + "/", timeout=120)
        self.token = CSRF_TOKEN.search(page.text).group(1)
        # Its cookies stay; its idle connection goes. Reused seconds later, the server may be
        # closing it as the POST goes out (gunicorn keeps idle connections 2 s), and a POST is
        # never sent again: the test would see a dropped connection, not the shop's answer.
        self.session.close()

    def buy(self, product, quantity):
        return self.session.post(
            self.server + "/checkout/",
            data={"csrfmiddlewaretoken": self.token, f"quantity-{product.pk}": str(quantity)},
            allow_redirects=False,
            timeout=120,
        )


def deliver(server, fake, event):
    body = json.dumps(event).encode()
    response = requests.post(
        server + WEBHOOK_URL,
        data=body,
        timeout=120,
        headers={"Content-Type": "application/json", "Stripe-Signature": fake.sign(body)},
    )
    assert response.status_code == 200, response.text


def units(orders, status=None):
    lines = OrderLine.objects.filter(order__in=orders)
    if status is not None:
        lines = lines.filter(order__status=status)
    return lines.aggregate(total=Sum("quantity"))["total"] or 0


def assert_every_unit_explained(mug):
    """The counts agree with the stock, with the orders, and with the movements."""
    mug.refresh_from_db()
    assert mug.held >= 0 and mug.sold >= 0
    assert mug.sold + mug.held <= mug.stock  # never oversold, never over-held
    assert mug.sold + mug.held + mug.available == mug.stock
    holding = Order.objects.filter(status=OrderStatus.PENDING, holds_stock=True)
    assert mug.held == units(holding)
    assert mug.sold == units(Order.objects.all(), OrderStatus.PAID)

    def moved(*kinds):
        rows = StockMovement.objects.filter(product=mug, kind__in=kinds)
        return rows.aggregate(total=Sum("quantity"))["total"] or 0

    assert mug.held == moved("hold") - moved("release") - moved("sale")
    assert mug.sold == moved("sale", "sale_unheld")


def test_sixty_browsers_on_two_app_servers_never_get_more_than_the_stock(
    mug, fake_stripe, two_app_servers
):
    rng = random.Random(13)
    # Mixed quantities, with more than STOCK buyers of one: once any of those is refused, every
    # unit was held at that moment (nothing is released during the race), so exactly STOCK are.
    quantities = [1 + i % 3 for i in range(60)]
    rng.shuffle(quantities)
    connections.close_all()  # the servers need the database more than this thread does
    with ThreadPoolExecutor(max_workers=8) as pool:
        browsers = list(pool.map(lambda i: Browser(two_app_servers[i % 2]), range(60)))
    fake_stripe.requests.clear()

    responses = in_threads(60, lambda i: browsers[i].buy(mug, quantities[i]))

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {303, 409}, statuses
    orders = list(Order.objects.all())
    assert len(orders) == statuses.count(303)
    assert units(orders) == STOCK
    mug.refresh_from_db()
    assert (mug.held, mug.sold) == (STOCK, 0)
    for response in responses:
        if response.status_code == 409:
            assert "Not enough in stock (Ceramic mug: " in response.text
            assert "nothing was reserved or charged" in response.text
    # Stripe heard of the winners only (a retry would carry the same key), one session each.
    creates = fake_stripe.requests_to("POST", "/v1/checkout/sessions")
    assert {r.idempotency_key for r in creates} == {
        f"checkout-session-{o.reference}" for o in orders
    }
    assert len(fake_stripe.sessions) == len(orders)
    assert_every_unit_explained(mug)

    # Then, in random order and two at a time on either server: payments, expiries, payments
    # that arrive after their session's expiry, and new browsers trying for what is released.
    plan = [("buy", rng.choice([1, 2, 3])) for _ in range(12)]
    for order in orders:
        what = rng.choice(["pay", "expire", "late", "late"])
        plan += (
            [("completes as it expires", order), ("late pay", order)]
            if what == "late"
            else [(what, order)]
        )
    rng.shuffle(plan)
    for n, (what, order) in enumerate(plan):  # each late payment after its expiry
        if what == "late pay" and plan.index(("completes as it expires", order)) > n:
            i = plan.index(("completes as it expires", order))
            plan[n], plan[i] = plan[i], plan[n]

    def act(step):
        (what, order), server = step
        if what == "buy":
            return Browser(server).buy(mug, order).status_code in (303, 409)
        sid = order.checkout_session_id
        if what == "expire":
            fake_stripe.expire(sid)
            deliver(server, fake_stripe, fake_stripe.session_event("checkout.session.expired", sid))
        elif what == "completes as it expires":
            fake_stripe.complete(sid)
            expired = dict(fake_stripe.sessions[sid], status="expired", payment_status="unpaid")
            deliver(server, fake_stripe, fake_stripe.event("checkout.session.expired", expired))
        else:
            if what == "pay":
                fake_stripe.complete(sid)
            event = fake_stripe.session_event("checkout.session.completed", sid)
            deliver(server, fake_stripe, event)
        return True

    for start in range(0, len(plan), 2):
        batch = [(step, two_app_servers[n % 2]) for n, step in enumerate(plan[start : start + 2])]
        assert all(in_threads(len(batch), lambda i, batch=batch: act(batch[i])))
        assert_every_unit_explained(mug)

    # Late payments are paid when their units are still there, flagged (and take nothing)
    # when others bought them meanwhile.
    for order in Order.objects.filter(transitions__to_status=OrderStatus.EXPIRED).distinct():
        if order.status == OrderStatus.PAID:
            assert StockMovement.objects.filter(order=order, kind="sale_unheld").exists()
        elif order.needs_review:
            assert "sold out" in order.review_reason
            assert not StockMovement.objects.filter(order=order, kind="sale_unheld").exists()

    # Whatever is still open ends: everything held comes back, and what is sold stays sold.
    for order in Order.objects.filter(status=OrderStatus.PENDING):
        fake_stripe.expire(order.checkout_session_id)
        event = fake_stripe.session_event("checkout.session.expired", order.checkout_session_id)
        deliver(two_app_servers[0], fake_stripe, event)
    assert_every_unit_explained(mug)
    mug.refresh_from_db()
    assert mug.held == 0 and mug.sold + mug.available == STOCK


def test_expiry_by_event_reconcile_and_clock_at_once_releases_the_hold_once(mug, fake_stripe):
    rounds = 30 if connections["default"].vendor == "postgresql" else 10
    for _ in range(rounds):
        buy(Client(), [mug], 3)
        order = last_order()
        Order.objects.filter(pk=order.pk).update(
            checkout_expires_at=order.checkout_expires_at.replace(year=2020)
        )
        fake_stripe.expire(order.checkout_session_id)
        event = fake_stripe.session_event("checkout.session.expired", order.checkout_session_id)
        ways = [
            lambda: signed_post(Client(), fake_stripe, event).status_code == 200,
            lambda: not payments_reconcile().errors,
            lambda: orders_expire_overdue() is not None,
        ]

        assert in_threads(3, lambda i, ways=ways: ways[i]()) == [True] * 3

        assert OrderTransition.objects.filter(order=order, to_status="expired").count() == 1
        assert StockMovement.objects.filter(order=order, kind="release").get().quantity == 3
        mug.refresh_from_db()
        assert mug.held == 0
    assert_every_unit_explained(mug)


def test_late_payment_racing_a_new_buyer_for_the_last_units_never_oversells(mug, fake_stripe):
    rounds = 30 if connections["default"].vendor == "postgresql" else 10
    for _ in range(rounds):
        mug.refresh_from_db()
        Product.objects.filter(pk=mug.pk).update(stock=mug.sold + mug.held + 2)  # 2 left
        assert buy(Client(), [mug], 2).status_code == 303
        late = last_order()
        sid = late.checkout_session_id
        fake_stripe.complete(sid)
        expired = dict(fake_stripe.sessions[sid], status="expired", payment_status="unpaid")
        signed_post(Client(), fake_stripe, fake_stripe.event("checkout.session.expired", expired))
        paid = fake_stripe.session_event("checkout.session.completed", sid)
        race = [
            lambda: signed_post(Client(), fake_stripe, paid).status_code,
            lambda: buy(Client(), [mug], 2).status_code,
        ]

        webhook, checkout = in_threads(2, lambda i, race=race: race[i]())

        late.refresh_from_db()
        assert webhook == 200 and checkout in (303, 409)
        # Exactly one of them has the two units.
        assert (late.status == OrderStatus.PAID) == (checkout == 409)
        # The payment that lost the race for the units is given back at once.
        assert Refund.objects.filter(order=late, cause="sold out").exists() == (checkout == 303)
        assert_every_unit_explained(mug)


def test_a_late_payment_for_sold_out_units_delivered_five_times_at_once_is_refunded_once(
    products, mug, fake_stripe, smtp
):
    from tests.conftest import post_event, run_tasks

    late = Client()
    buy(late, products, 0, 2, 0)
    order = last_order()
    fake_stripe.complete(order.checkout_session_id)
    session = dict(
        fake_stripe.sessions[order.checkout_session_id], status="expired", payment_status="unpaid"
    )
    post_event(late, fake_stripe, fake_stripe.event("checkout.session.expired", session))
    assert buy(Client(), products, 0, STOCK, 0).status_code == 303  # all of it, to someone else
    completed = [
        fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)
        for _ in range(5)
    ]
    connections.close_all()

    statuses = in_threads(5, lambda i: signed_post(Client(), fake_stripe, completed[i]).status_code)
    run_tasks()

    assert statuses == [200] * 5
    (refund,) = Refund.objects.filter(order=order)
    assert (refund.cause, refund.status, refund.amount) == (
        "sold out",
        "succeeded",
        order.amount_total,
    )
    assert len(fake_stripe.refunds) == 1
    assert len(fake_stripe.requests_to("POST", "/v1/refunds")) == 1
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    assert OrderTransition.objects.filter(order=order, to_status="refunded").count() == 1
    mug.refresh_from_db()
    assert (mug.sold, mug.held) == (0, STOCK)
    owner = smtp.to("owner@example.com")
    assert [m.subject for m in owner if "sold out" in m.subject] == [
        f"Order {order.reference} was paid after it sold out: refunding it"
    ]
