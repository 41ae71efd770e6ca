"""Data steps: what the database holds before a scenario runs, made the way real use makes it.

A customer's history comes through the shop itself (the form, checkout, Stripe's signed
webhook), one order after the other; the crowd of other browsers' orders comes after it, so
their ids are larger as they would be, in bulk; then the planner's statistics are refreshed as
autovacuum would. Each step returns what it made, for the report's sanity checks.
"""

import time
from datetime import timedelta

from django.db import connection, transaction  # lazy: importable before Django is set up
from django.db.models import Model
from django.utils import timezone

from bench.env import Shop

HISTORY_ORDERS = 1_000


def history(shop: Shop) -> str:
    """A browser that paid 1,000 orders and one that never paid, then 5,000 other browsers'."""
    from shop.orders.models import Order, OrderStatus

    started, paid_before = time.monotonic(), Order.objects.filter(status=OrderStatus.PAID).count()
    browser = None
    for n in range(HISTORY_ORDERS):
        browser = shop.buy(shop.cart(1, 0, 2) if n % 2 else shop.cart(2), browser)
    shop.browsers["history"] = browser or ""
    shop.browsers["none"], _ = shop.start_checkout(shop.cart(1))  # and left without paying
    seconds = time.monotonic() - started
    paid = Order.objects.filter(status=OrderStatus.PAID).count() - paid_before
    others_create(count=5_000, customers=5_000, tag="5k")
    return (
        f"{paid:,} orders of one browser paid through checkout and the webhook in {seconds:.0f} "
        f"s, then 5,000 orders of 5,000 other browsers inserted{analyze()}"
    )


def crowd(shop: Shop) -> str:
    """100,000 more orders of 20,000 other browsers, and a year's 100,000 webhook events."""
    from shop.payments.models import WebhookEvent

    started = time.monotonic()
    others_create(count=100_000, customers=20_000, tag="100k")
    event = WebhookEvent(
        outcome="paid",
        attempts=1,
        received_at=timezone.now() - timedelta(days=1),
        processed_at=timezone.now(),
        # Small on purpose: 100,000 real 5 kB bodies would make SQLite's file 500 MB.
        payload={"object": "event", "data": {"object": {"object": "charge"}}},
    )
    refund_or_payment = (
        "CASE WHEN n %% 50 = 0 THEN 'charge.refunded' ELSE 'checkout.session.completed' END"
    )
    varying = {"event_id": "'evt_benchpast' || n", "type": refund_or_payment}
    _insert_copies(WebhookEvent, event, count=100_000, varying=varying)
    seconds = time.monotonic() - started
    return (
        "100,000 orders and 100,000 events (one in fifty a refund) inserted in "
        f"{seconds:.1f} s{analyze()}"
    )


def others_create(*, count: int, customers: int, tag: str) -> None:
    """Paid orders of one line, of `customers` other browsers, copied from a real order line
    by the database itself (INSERT ... SELECT: 100,000 model instances take a minute)."""
    from shop.orders.models import Order, OrderLine

    line = OrderLine.objects.select_related("order").first()
    if line is None:
        raise RuntimeError("no order to copy: run a step that buys first")
    order, now = line.order, timezone.now()
    order.created_at = order.paid_at = now
    order.amount_total, line.quantity = line.unit_amount, 1
    prefix = f"ord_bench{tag}_"
    with transaction.atomic():
        varying = {
            "reference": f"'{prefix}' || n",
            "customer_key": f"'bench-{tag}-' || (n %% {customers})",
            "checkout_session_id": f"'cs_test_bench{tag}_' || n",
            "payment_intent_id": f"'pi_bench{tag}_' || n",
        }
        _insert_copies(Order, order, count=count, varying=varying)
        source = f"{Order._meta.db_table} WHERE reference LIKE '{prefix}%%'"
        _insert_copies(OrderLine, line, source=source, varying={"order": "id"})


def analyze() -> str:
    """On PostgreSQL, what autovacuum does by itself within a minute of a bulk insert."""
    if connection.vendor != "postgresql":
        return ""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return ", then ANALYZE"


def _insert_copies(
    model: type[Model],
    template: Model,
    *,
    varying: dict[str, str],
    count: int = 0,
    source: str = "",
) -> None:
    """Insert copies of `template`, some fields given as SQL over the rows of `source`, by
    default a counter n = 1..count. Only the bench's own constants are formatted in."""
    columns, values, params = [], [], []
    for f in model._meta.concrete_fields:
        if not f.primary_key:
            columns.append(connection.ops.quote_name(str(f.column)))  # concrete: has one
            values.append(varying.get(f.name, "%s"))
            if f.name not in varying:
                params.append(f.get_db_prep_save(f.pre_save(template, add=True), connection))
    sql = (
        "WITH RECURSIVE counter(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM counter "  # noqa: S608
        f"WHERE n < %s) INSERT INTO {model._meta.db_table} ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM {source or 'counter'}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [count, *params])
