"""Test data for the bench, written straight to the database the server under load uses."""

import copy
import json
import secrets
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from devtools.fakestripe import FakeStripe, load_fixtures
from shop.catalogue.models import Product
from shop.orders.models import Order, OrderLine, OrderStatus
from shop.payments.models import WebhookEvent
from shop.web.customer import COOKIE_NAME, customer_cookie_value

BATCH = 5_000


def browser_cookie(*, customer_key: str) -> str:
    """The Cookie header part of a browser that has bought before as `customer_key`."""
    return f"{COOKIE_NAME}={customer_cookie_value(customer_key)}"


def paid_orders_create(
    *, customer_key: str, count: int, products: Sequence[Product], tag: str
) -> None:
    """`count` paid orders of two lines each, oldest first, the way checkout leaves them."""
    now = timezone.now()
    bought = [products[0], products[-1]]
    for start in range(0, count, BATCH):
        orders = Order.objects.bulk_create(
            _paid_order(
                customer_key=customer_key,
                products=bought,
                tag=tag,
                number=n,
                created_at=now - timedelta(minutes=count - n),
            )
            for n in range(start, min(count, start + BATCH))
        )
        OrderLine.objects.bulk_create(line for order in orders for line in _lines(order, bought))
    analyze()


def other_customers_orders_create(
    *, count: int, customers: int, products: Sequence[Product]
) -> None:
    """Paid orders of other browsers, one line each, spread over `customers` customers.

    Made by the database itself (INSERT ... SELECT over a counter): building 100,000 model
    instances in Python takes a minute on a small machine. Every other column is copied from
    a template instance, so fields added later keep their defaults.
    """
    bought = products[:1]
    template = _paid_order(
        customer_key="",
        products=bought,
        tag="other",
        number=0,
        created_at=timezone.now() - timedelta(days=1),
    )
    with transaction.atomic():
        _insert_from_counter(
            Order,
            template,
            count=count,
            varying={
                "reference": ("'ord_benchother' || n", []),
                "customer_key": ("'bench-other-' || (n %% %s)", [customers]),
                "checkout_session_id": ("'cs_test_benchother' || n", []),
                "payment_intent_id": ("'pi_benchother' || n", []),
            },
        )
        line = next(_lines(template, bought))
        columns, values, params = _template_columns(OrderLine, line, {"order": ("id", [])})
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {OrderLine._meta.db_table} ({columns}) SELECT {values} "  # noqa: S608
                f"FROM {Order._meta.db_table} WHERE reference LIKE 'ord_benchother%%'",
                params,
            )
    analyze()


def past_webhook_events_create(*, count: int) -> None:
    """Processed events of past orders, one in fifty a refund, as a year of webhooks leaves."""
    template = WebhookEvent(
        event_id="",
        type="",
        attempts=1,
        outcome="paid",
        received_at=timezone.now() - timedelta(days=1),
        processed_at=timezone.now(),
        # Small on purpose: 100,000 real 5 kB bodies would make SQLite's file 500 MB.
        payload={
            "object": "event",
            "data": {"object": {"object": "charge", "payment_intent": "pi_bench_past"}},
        },
    )
    with transaction.atomic():
        _insert_from_counter(
            WebhookEvent,
            template,
            count=count,
            varying={
                "event_id": ("'evt_benchpast' || n", []),
                "type": (
                    "CASE WHEN n %% 50 = 0 THEN 'charge.refunded' "
                    "ELSE 'checkout.session.completed' END",
                    [],
                ),
            },
        )
    analyze()


def analyze() -> None:
    """On PostgreSQL, what autovacuum does by itself within a minute of a bulk insert."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def _insert_from_counter(
    model: type[Model], template: Model, *, count: int, varying: dict[str, tuple[str, list[Any]]]
) -> None:
    """Insert `count` copies of `template`, with SQL expressions of n (1..count) for some
    fields."""
    columns, values, params = _template_columns(model, template, varying)
    # Only model metadata and the bench's own constant expressions are formatted in.
    sql = (
        "WITH RECURSIVE counter(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM counter "  # noqa: S608
        f"WHERE n < %s) INSERT INTO {model._meta.db_table} ({columns}) "
        f"SELECT {values} FROM counter"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [count, *params])


def _template_columns(
    model: type[Model], template: Model, varying: dict[str, tuple[str, list[Any]]]
) -> tuple[str, str, list[Any]]:
    columns, values, params = [], [], []
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(connection.ops.quote_name(field.column))
        if field.name in varying:
            expression, expression_params = varying[field.name]
            values.append(expression)
            params.extend(expression_params)
        else:
            values.append("%s")
            params.append(field.get_db_prep_save(field.pre_save(template, add=True), connection))
    return ", ".join(columns), ", ".join(values), params


def pending_orders_create(
    *, count: int, products: Sequence[Product], fake: FakeStripe, tag: str
) -> list[Order]:
    """Orders of distinct browsers whose Checkout Session is open, as checkout leaves them."""
    now = timezone.now()
    created: list[Order] = []
    for start in range(0, count, BATCH):
        orders = Order.objects.bulk_create(
            Order(
                reference=f"ord_bench{tag}{n:07d}",
                customer_key=f"bench-{tag}-{n}",
                currency=settings.SHOP_CURRENCY,
                amount_total=sum(p.unit_amount for p in products[:1]),
                cart_key="bench",
                checkout_session_id=f"cs_test_bench{tag}{n:07d}",
                checkout_url=f"{fake.url}/c/pay/cs_test_bench{tag}{n:07d}",
                checkout_expires_at=now + timedelta(minutes=settings.CHECKOUT_SESSION_MINUTES),
            )
            for n in range(start, min(count, start + BATCH))
        )
        OrderLine.objects.bulk_create(
            line for order in orders for line in _lines(order, products[:1], quantity=1)
        )
        created.extend(orders)
    return created


class Events:
    """Signed checkout.session.completed deliveries, as Stripe sends them."""

    def __init__(self, fake: FakeStripe) -> None:
        self.fake = fake
        self.session_template = load_fixtures()["checkout.session"]

    def completed(self, order: Order) -> tuple[bytes, str]:
        session: dict[str, Any] = copy.deepcopy(self.session_template)
        session.update(
            id=order.checkout_session_id,
            object="checkout.session",
            mode="payment",
            status="complete",
            payment_status="paid",
            amount_subtotal=order.amount_total,
            amount_total=order.amount_total,
            currency=order.currency,
            client_reference_id=order.reference,
            metadata={"order_id": order.reference},
            payment_intent="pi_" + secrets.token_hex(12),
            url=None,
            livemode=False,
            success_url="http://127.0.0.1/checkout/success/?session_id={CHECKOUT_SESSION_ID}",
            cancel_url="http://127.0.0.1/?notice=cancelled",
            currency_conversion=None,
            shipping_cost=None,
            shipping_address_collection=None,
            total_details={"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        )
        event = self.fake.event("checkout.session.completed", session)
        body = json.dumps(event, indent=2).encode()
        return body, self.fake.sign(body)

    def completed_many(self, orders: Sequence[Order]) -> Iterator[tuple[bytes, str]]:
        return (self.completed(order) for order in orders)


def _paid_order(
    *, customer_key: str, products: Sequence[Product], tag: str, number: int, created_at: Any
) -> Order:
    return Order(
        reference=f"ord_bench{tag}{number:07d}",
        customer_key=customer_key,
        status=OrderStatus.PAID,
        currency=settings.SHOP_CURRENCY,
        amount_total=sum(p.unit_amount * (i + 1) for i, p in enumerate(products)),
        cart_key="bench",
        checkout_session_id=f"cs_test_bench{tag}{number:07d}",
        checkout_expires_at=created_at + timedelta(minutes=settings.CHECKOUT_SESSION_MINUTES),
        payment_intent_id=f"pi_bench{tag}{number:07d}",
        created_at=created_at,
        paid_at=created_at + timedelta(minutes=1),
    )


def _lines(
    order: Order, products: Sequence[Product], quantity: int | None = None
) -> Iterator[OrderLine]:
    for i, product in enumerate(products):
        yield OrderLine(
            order=order,
            product=product,
            product_name=product.name,
            unit_amount=product.unit_amount,
            quantity=quantity or i + 1,
        )
