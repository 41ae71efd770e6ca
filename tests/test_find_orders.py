"""Find my orders: an emailed, signed, expiring link adds an address's orders to a browser."""

import re
import time
from datetime import timedelta

import pytest
from django.core import mail, signing
from django.test import Client
from django_tasks_db.models import DBTaskResult

from shop.orders.links import orders_link_token
from shop.orders.models import Order, OrderStatus
from shop.web.customer import COOKIE_NAME, EMAILS_COOKIE_NAME
from tests.conftest import buy, last_order, run_tasks
from tests.test_pages import _paid_orders

pytestmark = pytest.mark.django_db
JO = "jo@example.com"


@pytest.fixture
def jo_orders(client, products, demo):
    """Two orders Jo paid in two other browsers, and one Jo left unpaid."""
    references = []
    for quantities in ((1, 0, 0), (0, 2, 0)):
        browser = Client()
        response = buy(browser, products, *quantities)
        browser.post(response["Location"], {"action": "pay", "email": JO})
        references.append(last_order().reference)
    buy(Client(), products, 0, 0, 3)
    Order.objects.filter(pk=last_order().pk).update(email=JO)  # pending: not a purchase
    return references


def ask(client, email):
    return client.post("/orders/find/", {"email": email})


def links_sent(smtp):
    return [m for m in smtp.received if m.subject == "Your orders at Corner Shop"]


def link_from(received):
    return re.search(r"http://testserver(/orders/find/open/\?token=\S+)", received.text).group(1)


def shown(client):
    return re.findall(r'data-order-id="(ord_\w+)"', client.get("/").content.decode())


def test_the_answer_is_the_same_for_a_customer_and_a_stranger(jo_orders, smtp):
    answers = [ask(Client(), email) for email in (JO, "nobody@example.com")]

    assert [a.status_code for a in answers] == [303, 303]
    assert answers[0]["Location"] == answers[1]["Location"] == "/orders/find/sent/"
    pages = [Client().get(a["Location"]).content.decode() for a in answers]
    assert pages[0] == pages[1]
    assert "If we have orders for that address, we have sent you a link" in pages[0]
    # Each request only enqueued its email; none was sent inside the request.
    assert mail.outbox == [] and links_sent(smtp) == []
    assert DBTaskResult.objects.filter(task_path__endswith="orders_link_send_task").count() == 2

    run_tasks()
    (sent,) = links_sent(smtp)
    assert sent.recipients == (JO,) and "24 hours" in sent.text
    assert link_from(sent) in sent.html.replace("&amp;", "&")


def test_opening_the_link_adds_the_addresses_paid_orders_to_this_browser(jo_orders, smtp):
    ask(Client(), "  JO@example.com ")  # addresses are compared in lower case
    run_tasks()
    (sent,) = links_sent(smtp)
    phone = Client()
    assert shown(phone) == []

    opened = phone.get(link_from(sent))

    assert opened.status_code == 303
    assert opened["Location"] == "/?notice=orders-found#my-orders"
    assert sorted(shown(phone)) == sorted(jo_orders)  # paid ones only, from other browsers
    assert "now listed under My Orders" in phone.get(opened["Location"]).content.decode()
    assert shown(Client()) == []  # other browsers see nothing


def test_the_link_joins_the_browsers_own_orders_and_keeps_its_key(client, jo_orders, products):
    response = buy(client, products, 0, 1, 0)
    client.post(response["Location"], {"action": "pay", "email": "other@example.com"})
    own = last_order().reference
    key_cookie = client.cookies[COOKIE_NAME].value

    client.get("/orders/find/open/?token=" + orders_link_token(email=JO))

    assert sorted(shown(client)) == sorted([*jo_orders, own])
    assert client.cookies[COOKIE_NAME].value == key_cookie


@pytest.mark.parametrize("case", ["expired", "altered", "foreign salt", "empty"])
def test_an_expired_or_altered_link_changes_nothing(jo_orders, monkeypatch, case):
    if case == "expired":
        now = time.time()
        monkeypatch.setattr(signing.time, "time", lambda: now - 24 * 3600 - 60)
        token = orders_link_token(email=JO)
        monkeypatch.undo()
    elif case == "altered":
        token = orders_link_token(email=JO)
        token = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    elif case == "foreign salt":  # a signature the shop made for something else
        token = signing.dumps(JO, salt="shop.customer.emails")
    else:
        token = ""
    browser = Client()

    response = browser.get("/orders/find/open/?token=" + token)

    assert response.status_code == 400
    assert "not valid any more" in response.content.decode()
    assert EMAILS_COOKIE_NAME not in response.cookies
    assert shown(browser) == []


def test_a_link_still_works_just_before_a_day_is_over(jo_orders, monkeypatch):
    now = time.time()
    monkeypatch.setattr(signing.time, "time", lambda: now - 24 * 3600 + 60)
    token = orders_link_token(email=JO)
    monkeypatch.undo()
    browser = Client()

    assert browser.get("/orders/find/open/?token=" + token).status_code == 303
    assert len(shown(browser)) == 2


def test_a_forged_cookie_adds_nothing(jo_orders):
    browser = Client()
    browser.cookies[EMAILS_COOKIE_NAME] = signing.dumps([JO], salt="not-the-shops-salt")

    assert shown(browser) == []


@pytest.mark.parametrize("email", ["", "jo", "jo@", "a" * 250 + "@example.com"])
def test_an_invalid_address_is_asked_again_and_nothing_is_enqueued(db, email):
    response = ask(Client(), email)

    assert response.status_code == 400
    assert 'id="email-error"' in response.content.decode()
    assert not DBTaskResult.objects.exists()


@pytest.fixture
def find_limits(settings):
    settings.RATELIMIT_ENABLE = True
    settings.FIND_ORDERS_RATE_PER_ADDRESS = "2/h"
    settings.FIND_ORDERS_RATE_PER_IP = "4/h"  # hourly windows: a test seldom straddles one


def test_asking_too_often_for_one_address_answers_429(db, find_limits):
    statuses = [
        Client(REMOTE_ADDR=f"10.0.0.{i}").post("/orders/find/", {"email": email}).status_code
        for i, email in enumerate([JO, "Jo@Example.com", " jo@example.com"])
    ]

    assert statuses == [303, 303, 429]
    assert DBTaskResult.objects.count() == 2


def test_asking_too_often_from_one_address_answers_429(db, find_limits):
    statuses = [ask(Client(), f"person{i}@example.com").status_code for i in range(5)]

    assert statuses == [303, 303, 303, 303, 429]
    limited = ask(Client(), "someone@example.com")
    assert "Too many attempts" in limited.content.decode()
    assert limited["Retry-After"] == "60"


def test_my_orders_with_a_linked_address_costs_what_it_always_did(
    client, products, fake_stripe, django_assert_num_queries
):
    buy(client, products, 1, 0, 0)
    _paid_orders(last_order().customer_key, 30, products[0])
    Order.objects.filter(status=OrderStatus.PAID).update(email="")
    linked = Client()
    linked.cookies = client.cookies
    linked.get("/orders/find/open/?token=" + orders_link_token(email=JO))
    _paid_orders("jos-other-browser", 30, products[1])
    Order.objects.filter(customer_key="jos-other-browser").update(email=JO)

    # Products, the page's order ids and statuses, the orders and their lines: as without.
    with django_assert_num_queries(4):
        page = linked.get("/").content.decode()
    assert page.count("<article") == 10
    assert {"jos-other-browser"} == set(
        Order.objects.filter(
            reference__in=re.findall(r'data-order-id="(ord_\w+)"', page)
        ).values_list("customer_key", flat=True)
    )


def test_the_storefront_links_to_find_my_orders(client, db):
    assert 'href="/orders/find/"' in client.get("/").content.decode()
    assert client.get("/orders/find/").status_code == 200


def test_a_failed_link_email_is_tried_again_later(jo_orders, smtp, settings):
    smtp.refuse()
    ask(Client(), JO)

    run_tasks()

    (retry,) = DBTaskResult.objects.filter(
        status="READY", task_path__endswith="orders_link_send_task"
    )
    assert retry.args_kwargs["kwargs"] == {"email": JO, "attempt": 2}
    assert retry.run_after - retry.enqueued_at > timedelta(seconds=50)
