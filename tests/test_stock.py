"""Limited stock: held at checkout, released or sold exactly once, never oversold."""

import logging
import re
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone

from shop.catalogue.models import Product, StockMovement
from shop.orders.models import Order, OrderStatus
from shop.orders.services import orders_expire_overdue
from shop.refunds.models import Refund
from tests.conftest import buy, last_order, pay, post_event, run_tasks

pytestmark = pytest.mark.django_db


def limit(product, stock):
    Product.objects.filter(pk=product.pk).update(stock=stock)
    product.refresh_from_db()
    return product


def counts(product):
    product.refresh_from_db()
    return {"stock": product.stock, "sold": product.sold, "held": product.held}


def test_products_are_unlimited_unless_given_a_stock(products):
    assert [p.stock for p in products] == [None, None, None]
    assert [p.available for p in products] == [None, None, None]


def test_available_is_stock_less_sold_and_held_never_below_zero(products):
    mug = products[1]
    mug.stock, mug.sold, mug.held = 12, 4, 3
    assert mug.available == 5
    mug.stock = 6  # lowered by the owner below what is sold and held
    assert mug.available == 0


@pytest.mark.parametrize("field", ["stock", "held", "sold"])
def test_database_keeps_stock_and_its_counts_from_going_below_zero(products, field):
    with pytest.raises(IntegrityError), transaction.atomic():
        Product.objects.filter(pk=products[0].pk).update(**{field: -1})


def test_admin_shows_held_and_available_next_to_stock(admin_client, products):
    mug = limit(products[1], 12)
    Product.objects.filter(pk=mug.pk).update(held=3, sold=4)

    page = admin_client.get(f"/admin/shop/product/{mug.pk}/change/").content.decode()
    listing = admin_client.get("/admin/shop/product/").content.decode()

    assert 'name="stock" value="12"' in page
    assert 'name="held"' not in page and 'name="sold"' not in page  # shown, never edited
    assert "field-held" in page and "field-available" in page
    assert '<td class="field-available">5</td>' in listing


def test_admin_edit_never_overwrites_holds_and_sales_made_while_the_form_was_open(
    admin_client, products, monkeypatch
):
    mug = limit(products[1], 12)
    form = {
        "name": mug.name,
        "description": mug.description,
        "unit_amount": mug.unit_amount,
        "stock": "20",
        "position": mug.position,
        "active": "on",
    }
    real_save = Product.save

    def save_after_a_sale(self, *args, **kwargs):
        # Checkouts hold and sell units between the admin's read and its save.
        Product.objects.filter(pk=mug.pk).update(held=2, sold=5)
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Product, "save", save_after_a_sale)

    response = admin_client.post(f"/admin/shop/product/{mug.pk}/change/", form)

    assert response.status_code == 302
    assert counts(mug) == {"stock": 20, "sold": 5, "held": 2}


def test_admin_list_edit_never_overwrites_holds(admin_client, products, monkeypatch):
    mug = limit(products[1], 12)
    Product.objects.filter(pk=mug.pk).update(held=2)
    form = {
        "form-TOTAL_FORMS": "3",
        "form-INITIAL_FORMS": "3",
        "_save": "Save",
    }
    for i, product in enumerate(Product.objects.order_by("position", "id")):
        form[f"form-{i}-id"] = str(product.pk)
        form[f"form-{i}-position"] = str(product.position + 10)
        form[f"form-{i}-active"] = "on"

    real_save = Product.save

    def save_after_a_hold(self, *args, **kwargs):
        if self.pk == mug.pk:  # a checkout holds one more between the page's read and its save
            Product.objects.filter(pk=mug.pk).update(held=3)
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Product, "save", save_after_a_hold)

    response = admin_client.post("/admin/shop/product/", form)

    assert response.status_code == 302
    assert counts(mug)["held"] == 3


# --- holding at checkout ---------------------------------------------------------------------


def creates(fake):
    return fake.requests_to("POST", "/v1/checkout/sessions")


def movements(order):
    return [
        (m.product_id, m.kind, m.quantity, m.cause)
        for m in StockMovement.objects.filter(order=order).order_by("id")
    ]


@pytest.fixture
def mug(products):
    return limit(products[1], 5)


def test_checkout_holds_the_units_of_limited_products(client, products, fake_stripe, mug):
    response = buy(client, products, 1, 2, 0)

    order = last_order()
    assert response.status_code == 303
    assert order.holds_stock
    assert counts(mug) == {"stock": 5, "sold": 0, "held": 2}
    assert movements(order) == [(mug.pk, "hold", 2, "checkout")]


def test_unlimited_products_hold_nothing(client, products, fake_stripe, mug):
    buy(client, products, 3, 0, 1)

    order = last_order()
    assert not order.holds_stock
    assert not StockMovement.objects.exists()
    assert Product.objects.filter(held__gt=0).count() == 0


@pytest.mark.parametrize(("stock", "wanted", "words"), [(3, 4, "only 3 left"), (0, 1, "sold out")])
def test_cart_above_what_is_available_is_refused_with_409_and_nothing_happens(
    client, products, fake_stripe, mug, stock, wanted, words
):
    limit(mug, stock)

    response = buy(client, products, 1, wanted, 0)  # a form tampered past the input's max

    page = response.content.decode()
    assert response.status_code == 409
    assert f"Ceramic mug: {words}" in page
    assert "nothing was reserved or charged" in page
    assert not Order.objects.exists()
    assert not StockMovement.objects.exists()
    assert creates(fake_stripe) == []
    assert counts(mug) == {"stock": stock, "sold": 0, "held": 0}


def test_units_held_by_others_are_not_available(client, products, fake_stripe, mug):
    assert buy(Client(), products, 0, 4, 0).status_code == 303

    response = buy(client, products, 0, 2, 0)

    assert response.status_code == 409
    assert "Ceramic mug: only 1 left" in response.content.decode()
    assert buy(client, products, 0, 1, 0).status_code == 303
    assert counts(mug)["held"] == 5


def test_same_cart_again_keeps_its_hold_and_session(client, products, fake_stripe, mug):
    first = buy(client, products, 0, 2, 0)
    again = buy(client, products, 0, 2, 0)

    assert again["Location"] == first["Location"]
    assert Order.objects.count() == 1
    assert counts(mug)["held"] == 2
    assert len(movements(last_order())) == 1


def test_a_customer_holding_the_last_units_may_change_the_cart(client, products, fake_stripe, mug):
    limit(mug, 2)
    buy(client, products, 0, 2, 0)
    first = last_order()

    response = buy(client, products, 1, 2, 0)

    second = last_order()
    first.refresh_from_db()
    assert response.status_code == 303
    assert first.status == OrderStatus.EXPIRED
    assert movements(first) == [
        (mug.pk, "hold", 2, "checkout"),
        (mug.pk, "release", 2, "cart_replaced"),
    ]
    assert movements(second) == [(mug.pk, "hold", 2, "checkout")]
    assert counts(mug) == {"stock": 2, "sold": 0, "held": 2}
    open_sessions = [s for s in fake_stripe.sessions.values() if s["status"] == "open"]
    assert [s["id"] for s in open_sessions] == [second.checkout_session_id]


def test_a_customer_asking_for_more_than_there_is_keeps_the_checkout_they_have(
    client, products, fake_stripe, mug
):
    limit(mug, 2)
    buy(client, products, 0, 2, 0)
    first = last_order()

    response = buy(client, products, 0, 3, 0)

    assert response.status_code == 409
    assert "Ceramic mug: only 2 left" in response.content.decode()
    first.refresh_from_db()
    assert first.status == OrderStatus.PENDING and first.released_at is None
    assert counts(mug)["held"] == 2


# --- releasing -------------------------------------------------------------------------------


@pytest.fixture
def held(client, products, fake_stripe, mug):
    """An open checkout holding 2 of the 5 mugs."""
    buy(client, products, 1, 2, 0)
    return last_order()


def send(client, fake, type, order, **session_fields):
    session = dict(fake.sessions[order.checkout_session_id], **session_fields)
    return post_event(client, fake, fake.event(type, session))


def test_expired_session_releases_the_hold(client, fake_stripe, held, mug):
    fake_stripe.expire(held.checkout_session_id)
    event = fake_stripe.session_event("checkout.session.expired", held.checkout_session_id)

    post_event(client, fake_stripe, event)
    post_event(client, fake_stripe, event)  # again: nothing more

    held.refresh_from_db()
    assert held.status == OrderStatus.EXPIRED
    assert counts(mug) == {"stock": 5, "sold": 0, "held": 0}
    release = StockMovement.objects.get(order=held, kind="release")
    assert (release.quantity, release.cause, release.event_id) == (
        2,
        "checkout.session.expired",
        event["id"],
    )


def test_failed_bank_payment_releases_the_hold(client, fake_stripe, held, mug):
    fake_stripe.complete(held.checkout_session_id, payment_status="unpaid")
    send(client, fake_stripe, "checkout.session.completed", held)
    assert counts(mug)["held"] == 2  # still processing: still held

    fake_stripe.fail_payment(held.checkout_session_id)
    send(client, fake_stripe, "checkout.session.async_payment_failed", held)

    held.refresh_from_db()
    assert held.status == OrderStatus.FAILED
    assert counts(mug)["held"] == 0
    assert movements(held)[-1] == (mug.pk, "release", 2, "checkout.session.async_payment_failed")


def test_replaced_cart_releases_the_hold(client, products, fake_stripe, held, mug):
    buy(client, products, 1, 0, 0)

    held.refresh_from_db()
    assert held.status == OrderStatus.EXPIRED
    assert counts(mug)["held"] == 0
    assert movements(held)[-1] == (mug.pk, "release", 2, "cart_replaced")


def test_stripe_unreachable_before_a_session_url_releases_the_hold(
    client, products, fake_stripe, mug
):
    fake_stripe.fail_next(10, status=500)

    response = buy(client, products, 0, 2, 0)

    order = last_order()
    assert response.status_code == 503
    assert order.status == OrderStatus.FAILED
    assert counts(mug)["held"] == 0
    assert movements(order) == [
        (mug.pk, "hold", 2, "checkout"),
        (mug.pk, "release", 2, "checkout_unavailable"),
    ]


def overdue(order, minutes=11):
    Order.objects.filter(pk=order.pk).update(
        checkout_expires_at=timezone.now() - timedelta(minutes=minutes)
    )


def test_the_shops_clock_releases_a_hold_whose_checkout_ended(fake_stripe, held, mug):
    overdue(held, minutes=9)
    assert orders_expire_overdue() == []  # within the margin: the event may still come

    overdue(held, minutes=11)
    assert orders_expire_overdue() == [held]

    held.refresh_from_db()
    assert held.status == OrderStatus.EXPIRED
    assert counts(mug)["held"] == 0
    assert movements(held)[-1] == (mug.pk, "release", 2, "checkout_overdue")


def test_reconcile_releases_the_hold_of_an_expired_session(fake_stripe, held, mug):
    fake_stripe.expire(held.checkout_session_id)

    call_command("reconcile_payments")

    assert counts(mug)["held"] == 0
    assert movements(held)[-1] == (mug.pk, "release", 2, "reconcile")


def test_reconcile_releases_overdue_holds_stripe_could_not_tell_about(fake_stripe, held, mug):
    overdue(held)
    fake_stripe.fail_next(10, status=500)

    with pytest.raises(CommandError):
        call_command("reconcile_payments")

    assert counts(mug)["held"] == 0
    assert movements(held)[-1] == (mug.pk, "release", 2, "checkout_overdue")


def test_checkout_releases_overdue_holds_before_refusing_a_cart(
    client, products, fake_stripe, held, mug
):
    buy(Client(), products, 0, 3, 0)  # all 5 held now
    overdue(held)

    response = buy(Client(), products, 0, 2, 0)

    held.refresh_from_db()
    assert response.status_code == 303
    assert held.status == OrderStatus.EXPIRED
    assert counts(mug)["held"] == 5


# --- selling ---------------------------------------------------------------------------------


def test_payment_turns_the_hold_into_a_sale_once(client, fake_stripe, held, mug):
    pay(client, fake_stripe, held)
    send(client, fake_stripe, "checkout.session.completed", held)  # another event, same payment
    client.get(f"/checkout/success/?session_id={held.checkout_session_id}")

    held.refresh_from_db()
    assert held.status == OrderStatus.PAID
    assert counts(mug) == {"stock": 5, "sold": 2, "held": 0}
    assert movements(held) == [
        (mug.pk, "hold", 2, "checkout"),
        (mug.pk, "sale", 2, "checkout.session.completed"),
    ]


def test_expiry_after_payment_releases_nothing(client, fake_stripe, held, mug):
    pay(client, fake_stripe, held)

    send(client, fake_stripe, "checkout.session.expired", held, status="expired")

    assert counts(mug) == {"stock": 5, "sold": 2, "held": 0}
    assert [kind for _, kind, _, _ in movements(held)] == ["hold", "sale"]


def expire_then_complete(client, fake, order):
    """The session completes just as it expires: Stripe's expired event arrives first."""
    fake.complete(order.checkout_session_id)
    send(client, fake, "checkout.session.expired", order, status="expired", payment_status="unpaid")
    order.refresh_from_db()
    assert order.status == OrderStatus.EXPIRED


def test_late_payment_with_stock_left_is_paid(client, fake_stripe, held, mug):
    expire_then_complete(client, fake_stripe, held)
    assert counts(mug)["held"] == 0

    response = send(client, fake_stripe, "checkout.session.completed", held)

    held.refresh_from_db()
    assert response.status_code == 200
    assert held.status == OrderStatus.PAID and not held.needs_review
    assert [(t.from_status, t.to_status) for t in held.transitions.all()] == [
        ("pending", "expired"),
        ("expired", "paid"),
    ]
    assert counts(mug) == {"stock": 5, "sold": 2, "held": 0}
    assert [kind for _, kind, _, _ in movements(held)] == ["hold", "release", "sale_unheld"]
    # Its second delivery changes nothing.
    send(client, fake_stripe, "checkout.session.completed", held)
    assert counts(mug)["sold"] == 2


def test_late_payment_after_a_failed_bank_payment_is_paid_too(client, fake_stripe, held, mug):
    Order.objects.filter(pk=held.pk).update(status=OrderStatus.FAILED)
    StockMovement.objects.create(order=held, product=mug, kind="release", quantity=2, cause="x")
    Product.objects.filter(pk=mug.pk).update(held=0)
    fake_stripe.complete(held.checkout_session_id)

    send(client, fake_stripe, "checkout.session.completed", held)

    held.refresh_from_db()
    assert held.status == OrderStatus.PAID
    assert counts(mug) == {"stock": 5, "sold": 2, "held": 0}


def test_late_payment_without_stock_left_is_refunded_at_once_and_takes_nothing(
    client, products, fake_stripe, held, mug, caplog, smtp
):
    expire_then_complete(client, fake_stripe, held)
    assert buy(Client(), products, 0, 4, 0).status_code == 303  # someone else holds 4 of 5

    with caplog.at_level(logging.ERROR, logger="shop"):
        response = send(client, fake_stripe, "checkout.session.completed", held)

    held.refresh_from_db()
    assert response.status_code == 200
    assert held.status == OrderStatus.EXPIRED  # until the refund has gone through
    assert counts(mug) == {"stock": 5, "sold": 0, "held": 4}
    assert [kind for _, kind, _, _ in movements(held)] == ["hold", "release"]
    assert held.transitions.filter(to_status="paid").count() == 0
    assert any("Ceramic mug: 2 paid for, 1 left" in r.getMessage() for r in caplog.records)
    (refund,) = Refund.objects.all()
    assert (refund.cause, refund.amount, refund.status) == (
        "sold out",
        held.amount_total,
        "pending",
    )

    run_tasks()

    (made,) = fake_stripe.refunds.values()
    assert made["amount"] == held.amount_total
    assert made["payment_intent"] == held.payment_intent_id
    held.refresh_from_db()
    assert held.status == OrderStatus.REFUNDED and held.paid_at is not None
    assert held.transitions.get(to_status="refunded").from_status == "expired"
    assert counts(mug) == {"stock": 5, "sold": 0, "held": 4}
    assert any("sold out" in m.subject for m in smtp.to("owner@example.com"))
    customer = [m for m in smtp.received if m.recipients != ("owner@example.com",)]
    assert len(customer) == 1 and "Refund" in customer[0].subject
    assert "sold while your payment was on its way" in customer[0].text


def test_owner_lowering_stock_below_holds_keeps_them_and_sells_out(
    client, products, fake_stripe, held, mug
):
    limit(mug, 1)  # 2 held

    assert buy(Client(), products, 0, 1, 0).status_code == 409
    pay(client, fake_stripe, held)

    assert counts(mug) == {"stock": 1, "sold": 2, "held": 0}
    assert Product.objects.get(pk=mug.pk).available == 0


def test_owner_lowering_stock_below_holds_gives_back_what_is_left_once_released(
    client, products, fake_stripe, held, mug
):
    limit(mug, 3)
    assert buy(Client(), products, 0, 2, 0).status_code == 409

    fake_stripe.expire(held.checkout_session_id)
    send(client, fake_stripe, "checkout.session.expired", held)

    assert Product.objects.get(pk=mug.pk).available == 3
    assert buy(Client(), products, 0, 3, 0).status_code == 303


@pytest.mark.parametrize(("stock", "paid"), [(5, True), (1, False)])
def test_stock_set_while_a_checkout_is_open_counts_its_payment(
    client, products, fake_stripe, stock, paid
):
    mug = products[1]
    buy(client, products, 0, 2, 0)  # unlimited then
    order = last_order()
    limit(mug, stock)

    pay(client, fake_stripe, order)

    order.refresh_from_db()
    assert (order.status == OrderStatus.PAID) is paid
    # Without the units, the money goes back at once.
    assert Refund.objects.filter(order=order, cause="sold out").exists() is not paid
    assert counts(mug)["sold"] == (2 if paid else 0)
    assert [kind for _, kind, _, _ in movements(order)] == (["sale_unheld"] if paid else [])


# --- demo mode -------------------------------------------------------------------------------


def test_demo_mode_holds_and_sells_the_same_way(client, products, demo, mug):
    response = buy(client, products, 0, 2, 0)
    assert counts(mug)["held"] == 2
    assert buy(Client(), products, 0, 4, 0).status_code == 409

    client.post(response["Location"], {"action": "pay", "email": "jo@example.com"})

    assert counts(mug) == {"stock": 5, "sold": 2, "held": 0}
    assert [kind for _, kind, _, _ in movements(last_order())] == ["hold", "sale"]


def test_demo_checkout_past_its_end_cannot_be_paid_and_gives_its_stock_back(
    client, products, demo, mug
):
    response = buy(client, products, 0, 2, 0)
    order = last_order()
    overdue(order, minutes=1)

    client.post(response["Location"], {"action": "pay", "email": "jo@example.com"})
    call_command("reconcile_payments")

    order.refresh_from_db()
    assert order.status == OrderStatus.EXPIRED
    assert counts(mug) == {"stock": 5, "sold": 0, "held": 0}


# --- the storefront --------------------------------------------------------------------------


def product_markup(page, product):
    start = page.index(f'data-product-id="{product.pk}"')
    return page[start : page.index("</li>", start)]


def test_storefront_says_sold_out_and_only_n_left_without_javascript(client, products):
    coffee, mug, filters = products
    limit(mug, 0)
    limit(filters, 9)
    Product.objects.filter(pk=filters.pk).update(held=4)  # 5 left

    page = client.get("/").content.decode()

    sold_out = product_markup(page, mug)
    assert '<p class="stock stock-out" id="stock-' in sold_out and "Sold out" in sold_out
    assert re.search(r"<input [^>]*\bdisabled>", sold_out)  # a disabled field is not submitted
    few = product_markup(page, filters)
    assert "Only 5 left" in few and 'max="5"' in few and "disabled" not in few
    plenty = product_markup(page, coffee)
    assert 'max="99"' in plenty and "stock-" not in plenty


def test_storefront_caps_the_inputs_max_at_99(client, products):
    limit(products[1], 500)

    page = client.get("/").content.decode()

    assert 'max="99"' in product_markup(page, products[1])
    assert "left" not in product_markup(page, products[1])


def test_storefront_disables_buy_when_everything_is_sold_out(client, products):
    for product in products:
        limit(product, 0)

    page = client.get("/").content.decode()

    assert re.search(r'<button type="submit" id="buy"[^>]* disabled>', page)


def test_storefront_shows_availability_as_checkouts_hold_and_release_it(
    client, products, fake_stripe, mug, django_capture_on_commit_callbacks
):
    def shown():
        return product_markup(client.get("/").content.decode(), mug)

    assert "Only 5 left" in shown()  # and cached

    # Each change drops the cached list once it commits.
    with django_capture_on_commit_callbacks(execute=True):
        buy(Client(), products, 0, 3, 0)
    assert "Only 2 left" in shown()

    with django_capture_on_commit_callbacks(execute=True):
        buy(Client(), products, 0, 2, 0)
    assert "Sold out" in shown()

    order = last_order()
    fake_stripe.expire(order.checkout_session_id)
    with django_capture_on_commit_callbacks(execute=True):
        send(client, fake_stripe, "checkout.session.expired", order)
    assert "Only 2 left" in shown()


def test_refused_cart_shows_the_stock_as_it_is_now(client, products, fake_stripe, mug):
    client.get("/")  # the list is cached with 5 available
    buy(Client(), products, 0, 4, 0)

    response = buy(client, products, 0, 3, 0)

    markup = product_markup(response.content.decode(), mug)
    assert response.status_code == 409
    assert "Only 1 left" in markup and 'max="1"' in markup
    assert 'value="3"' in markup  # what the customer asked for, shown beside the error


def test_storefront_lists_availability_in_the_one_query_for_products(
    client, products, django_assert_num_queries
):
    for product in products:
        limit(product, 7)

    with django_assert_num_queries(1):
        client.get("/")


def test_admin_explains_every_unit_on_the_order_and_per_product(
    admin_client, client, fake_stripe, held, mug
):
    pay(client, fake_stripe, held)

    order_page = admin_client.get(f"/admin/shop/order/{held.pk}/change/").content.decode()
    movements_page = admin_client.get(f"/admin/shop/stockmovement/?product__id__exact={mug.pk}")

    assert "Held by checkout" in order_page and "Sold (its hold became a sale)" in order_page
    assert movements_page.status_code == 200
    assert movements_page.content.decode().count(held.reference) == 2
