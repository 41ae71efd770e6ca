import re

import pytest
from django.test import Client
from django.utils import timezone

from shop.catalogue.models import Product
from shop.orders.models import Order, OrderStatus
from tests.conftest import buy, last_order, pay, post_event

pytestmark = pytest.mark.django_db


def test_migrations_create_three_products_with_integer_cent_prices(products):
    assert len(products) == 3
    assert all(isinstance(p.unit_amount, int) and p.unit_amount > 0 for p in products)


def test_storefront_shows_products_prices_and_one_form(client, products):
    page = client.get("/").content.decode()

    assert page.count('<form method="post"') == 1
    for product in products:
        assert product.name in page
        assert f'name="quantity-{product.pk}"' in page
    assert "$12.50" in page  # 1250 cents
    assert 'id="my-orders"' in page


def test_storefront_for_first_time_visitor_creates_no_session(
    client, products, django_assert_num_queries
):
    with django_assert_num_queries(1):  # the products
        response = client.get("/")
    assert "sessionid" not in response.cookies
    assert "shop_customer" not in response.cookies


def test_success_page_without_webhook_marks_order_paid(client, products, fake_stripe):
    buy(client, products, 1, 0, 0)
    order = last_order()
    fake_stripe.complete(order.checkout_session_id)

    response = client.get(f"/checkout/success/?session_id={order.checkout_session_id}")

    order.refresh_from_db()
    assert response.status_code == 200
    assert order.status == OrderStatus.PAID
    assert 'data-status="paid"' in response.content.decode()
    page = client.get("/").content.decode()
    assert f'data-order-id="{order.reference}" data-status="paid"' in page


def test_success_page_before_payment_says_processing_and_changes_nothing(
    client, products, fake_stripe
):
    buy(client, products, 1, 0, 0)
    order = last_order()

    response = client.get(f"/checkout/success/?session_id={order.checkout_session_id}")

    assert response.status_code == 200
    assert "being processed" in response.content.decode()
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING


def test_success_page_then_webhook_is_still_one_payment(client, products, fake_stripe):
    buy(client, products, 1, 0, 0)
    order = last_order()
    fake_stripe.complete(order.checkout_session_id)
    client.get(f"/checkout/success/?session_id={order.checkout_session_id}")

    from tests.conftest import post_event

    post_event(
        client,
        fake_stripe,
        fake_stripe.session_event("checkout.session.completed", order.checkout_session_id),
    )

    assert order.transitions.filter(to_status="paid").count() == 1


def test_another_browsers_session_id_changes_nothing_and_calls_no_stripe(
    client, products, fake_stripe
):
    buy(client, products, 1, 0, 0)
    order = last_order()
    fake_stripe.complete(order.checkout_session_id)
    fake_stripe.requests.clear()

    stranger = Client()
    response = stranger.get(f"/checkout/success/?session_id={order.checkout_session_id}")

    assert response.status_code == 303
    assert response["Location"] == "/?notice=unknown-session"
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING
    assert fake_stripe.requests == []
    assert order.reference not in stranger.get("/").content.decode()


@pytest.mark.parametrize(
    "query", ["", "?session_id=", "?session_id=cs_test_nope", "?session_id=<script>"]
)
def test_success_page_with_unknown_session_redirects_with_notice(
    client, products, fake_stripe, query
):
    buy(client, products, 1, 0, 0)
    response = client.get(f"/checkout/success/{query}")

    assert response.status_code == 303
    assert "unknown-session" in response["Location"]


def test_success_page_when_stripe_is_down_shows_processing(client, products, fake_stripe):
    buy(client, products, 1, 0, 0)
    order = last_order()
    fake_stripe.fail_next(3)

    response = client.get(f"/checkout/success/?session_id={order.checkout_session_id}")

    assert response.status_code == 200
    assert "being processed" in response.content.decode()
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING and not order.needs_review


def test_cancel_returns_to_storefront_with_notice(client, products):
    response = client.get("/?notice=cancelled")
    assert "Checkout cancelled" in response.content.decode()


def test_my_orders_are_private_to_each_browser(products, fake_stripe):
    alice, bob = Client(), Client()
    buy(alice, products, 1, 0, 0)
    order = last_order()
    pay(alice, fake_stripe, order)

    assert order.reference in alice.get("/").content.decode()
    assert order.reference not in bob.get("/").content.decode()
    buy(bob, products, 0, 1, 0)
    assert order.reference not in bob.get("/").content.decode()


def test_my_orders_lists_only_paid_and_refunded_newest_first(client, products, fake_stripe):
    shown = []
    for quantity in (1, 2, 3):
        buy(client, products, quantity, 0, 0)
        order = last_order()
        pay(client, fake_stripe, order)
        shown.append(order)
    post_event(client, fake_stripe, fake_stripe.charge_refunded(shown[1].checkout_session_id))
    hidden = []
    buy(client, products, 4, 0, 0)  # expired
    hidden.append(last_order())
    fake_stripe.expire(hidden[-1].checkout_session_id)
    post_event(
        client,
        fake_stripe,
        fake_stripe.session_event("checkout.session.expired", hidden[-1].checkout_session_id),
    )
    buy(client, products, 5, 0, 0)  # failed (an async payment that did not go through)
    hidden.append(last_order())
    fake_stripe.complete(hidden[-1].checkout_session_id, payment_status="unpaid")
    fake_stripe.fail_payment(hidden[-1].checkout_session_id)
    post_event(
        client,
        fake_stripe,
        fake_stripe.session_event(
            "checkout.session.async_payment_failed", hidden[-1].checkout_session_id
        ),
    )
    buy(client, products, 9, 0, 0)  # pending
    hidden.append(last_order())

    page = client.get("/").content.decode()

    statuses = {o.reference: Order.objects.get(pk=o.pk).status for o in shown + hidden}
    assert sorted(statuses.values()) == ["expired", "failed", "paid", "paid", "pending", "refunded"]
    positions = [page.index(o.reference) for o in reversed(shown)]
    assert positions == sorted(positions)
    assert not any(o.reference in page for o in hidden)
    assert page.count("<article") == 3
    assert 'data-status="refunded"' in page


def _paid_orders(customer_key, count, product, *, one_each=False):
    """`count` paid orders of `customer_key`'s browser (with one_each: of as many browsers)."""
    from django.utils import timezone

    orders = Order.objects.bulk_create(
        Order(
            customer_key=f"{customer_key}-{i}" if one_each else customer_key,
            status=OrderStatus.PAID,
            currency="usd",
            amount_total=product.unit_amount,
            cart_key=str(i),
            paid_at=timezone.now(),
            checkout_expires_at=timezone.now(),
        )
        for i in range(count)
    )
    from shop.orders.models import OrderLine

    OrderLine.objects.bulk_create(
        OrderLine(
            order=o,
            product=product,
            product_name=product.name,
            unit_amount=product.unit_amount,
            quantity=1,
        )
        for o in orders
    )
    return orders


def test_storefront_query_count_is_bounded_with_many_orders(
    client, products, fake_stripe, django_assert_max_num_queries
):
    buy(client, products, 1, 0, 0)
    key = last_order().customer_key
    _paid_orders(key, 60, products[0])

    with django_assert_max_num_queries(4):  # session, products, orders, their lines
        page = client.get("/").content.decode()

    assert page.count("<article") == 10
    assert 'rel="next"' in page


@pytest.mark.parametrize("same_instant", [False, True])
def test_my_orders_pages_through_the_whole_history(client, products, fake_stripe, same_instant):
    buy(client, products, 1, 0, 0)
    key = last_order().customer_key
    _paid_orders(key, 25, products[0])
    if same_instant:  # pages must neither skip nor repeat orders paid at one instant
        Order.objects.filter(customer_key=key).exclude(paid_at=None).update(paid_at=timezone.now())
    expected = list(
        Order.objects.filter(customer_key=key, status="paid")
        .order_by("-paid_at", "-id")
        .values_list("reference", flat=True)
    )

    seen, url = [], "/"
    while url:
        page = client.get(url).content.decode()
        seen += re.findall(r'data-order-id="([^"]+)"', page)
        older = re.search(r'href="(\?before=\d+)#my-orders" rel="next"', page)
        url = "/" + older.group(1) if older else None

    assert seen == expected and len(seen) == 25


def test_healthz_answers_when_database_is_up(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok\n"


def test_product_price_change_does_not_change_placed_orders(client, products, fake_stripe):
    buy(client, products, 2, 0, 0)
    order = last_order()
    Product.objects.filter(pk=products[0].pk).update(unit_amount=99999)
    pay(client, fake_stripe, order)

    order = Order.objects.get(pk=order.pk)
    line = order.lines.get()
    assert line.unit_amount == products[0].unit_amount
    assert order.amount_total == 2 * products[0].unit_amount
    assert order.status == OrderStatus.PAID


def test_admin_lists_orders_products_and_events(admin_client, client, products, fake_stripe):
    buy(client, products, 1, 0, 0)
    order = last_order()
    pay(client, fake_stripe, order)

    for url in [
        "/admin/shop/product/",
        "/admin/shop/order/?status__exact=paid",
        f"/admin/shop/order/{order.pk}/change/",
        "/admin/shop/webhookevent/",
        "/admin/shop/webhookdelivery/",
    ]:
        assert admin_client.get(url).status_code == 200, url
    page = admin_client.get(f"/admin/shop/order/{order.pk}/change/").content.decode()
    assert 'name="amount_total"' not in page  # money is read-only


def test_my_orders_shows_a_refund_although_the_section_is_cached(client, products, fake_stripe):
    buy(client, products, 1, 0, 0)
    order = last_order()
    pay(client, fake_stripe, order)
    assert 'data-status="paid"' in client.get("/").content.decode()

    post_event(client, fake_stripe, fake_stripe.charge_refunded(order.checkout_session_id))

    assert 'data-status="refunded"' in client.get("/").content.decode()


def test_success_page_for_a_completed_but_unpaid_session_says_processing(
    client, products, fake_stripe
):
    buy(client, products, 1, 0, 0)
    order = last_order()
    fake_stripe.complete(order.checkout_session_id, payment_status="unpaid")  # a bank debit

    page = client.get(f"/checkout/success/?session_id={order.checkout_session_id}")

    assert page.status_code == 200
    assert "being processed" in page.content.decode()
    assert "Thank you" not in page.content.decode()
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING
    assert order.reference not in client.get("/").content.decode()


def _history_plan(customer_key):
    from shop.orders.selectors import ORDERS_PER_PAGE, order_history

    query = order_history(customer_key=customer_key).values_list("id", "reference", "status")
    return query[: ORDERS_PER_PAGE + 1].explain()


@pytest.mark.django_db(transaction=True)
def test_my_orders_query_uses_its_index_however_many_orders_other_browsers_placed(
    products,
):
    """Built as real use builds it: one browser's long history first, then thousands of other
    browsers' orders (newer ids), then the statistics autovacuum would gather."""
    from django.db import connection

    # The browser's history is old and a large part of the table: PostgreSQL's statistics then
    # call its key common and reckon its rows spread over every id.
    _paid_orders("long-history", 1000, products[0])
    _paid_orders("other-browser", 5000, products[1], one_each=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    plan = _history_plan("long-history")

    assert "order_history_idx" in plan, plan
    assert "pkey" not in plan, plan  # no walk down the primary key past other browsers
