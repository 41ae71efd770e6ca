"""Time the owner's overview on a big shop: `python -m devtools.overview [--backend sqlite]`.

Builds a throwaway database (a PostgreSQL cluster, or a SQLite file), fills it with a year of a
busy shop's orders (100,000 by default) and times the overview page in process through the test
client with a staff session, printing each statement with its time (and its plan, --explain).

Colleagues' benchmarks can call the pieces on a database of their own, once Django is set up:
`orders_for_overview_create` (the orders), `staff_cookie` (a Cookie header that reaches the
page from any HTTP client) and `overview_time` (in-process timing and statements).
"""

import argparse
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shop.catalogue.models import Product
    from shop.orders.models import Order

STAFF_USERNAME = "overview-owner"
BATCH = 2_000


def orders_for_overview_create(
    *,
    count: int = 100_000,
    days: int = 365,
    seed: int = 14,
    now: datetime | None = None,
) -> None:
    """`count` orders spread evenly over the last `days` days, as a busy shop leaves them.

    Of every hundred: 85 paid (2 of them partly refunded), 3 refunded, 5 expired, 3 failed and
    2 pending, each with one to three lines; a succeeded refund record for every refund, a
    dispute for one paid order in a thousand, and one order in a thousand flagged for review.
    """
    from django.db import transaction
    from django.utils import timezone

    from shop.catalogue.models import Product
    from shop.orders.models import Order, OrderLine
    from shop.refunds.models import Dispute, Refund

    rng = random.Random(seed)  # noqa: S311 - test data, repeatable on purpose
    now = now or timezone.now()
    products = list(Product.objects.filter(active=True).order_by("position", "id"))
    seconds = days * 24 * 3600
    for start in range(0, count, BATCH):
        with transaction.atomic():
            orders = Order.objects.bulk_create(
                _order(rng, number=n, placed=now - timedelta(seconds=seconds * (count - n) / count))
                for n in range(start, min(count, start + BATCH))
            )
            OrderLine.objects.bulk_create(
                line for order in orders for line in _lines(rng, order=order, products=products)
            )
            Refund.objects.bulk_create(
                _refund(rng, order=order, now=now) for order in orders if order.amount_refunded
            )
            Dispute.objects.bulk_create(
                _dispute(order) for order in orders if order.disputed and order.paid_at
            )
    _analyze()


def staff_cookie(*, username: str = STAFF_USERNAME) -> str:
    """A Cookie header value with a staff (superuser) session that reaches the overview."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, created = get_user_model().objects.get_or_create(
        username=username, defaults={"is_staff": True, "is_superuser": True}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


@dataclass(frozen=True)
class Statement:
    sql: str
    ms: float


@dataclass(frozen=True)
class OverviewTiming:
    requests: int
    median_ms: float
    best_ms: float
    # CPU of this process per request (on SQLite the database's work too; on a busy machine
    # steadier than the wall clock).
    cpu_ms: float
    statements: list[Statement]  # of the last request


def overview_url() -> str:
    from django.urls import reverse

    return reverse("admin:overview")


def overview_time(*, requests: int = 20) -> OverviewTiming:
    """Time the overview page in process (test client, staff session): the whole request,
    middleware and admin included, after one warm-up request."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_COOKIE=staff_cookie())
    url = overview_url()
    if client.get(url).status_code != 200:
        raise RuntimeError(f"{url} did not answer 200 with a staff session")
    times = []
    cpu_started = time.process_time()
    for _ in range(requests):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return OverviewTiming(
        requests=requests,
        median_ms=statistics.median(times),
        best_ms=min(times),
        cpu_ms=(time.process_time() - cpu_started) * 1000 / requests,
        statements=[
            Statement(query["sql"], float(query["time"]) * 1000)
            for query in queries.captured_queries
        ],
    )


def _order(rng: random.Random, *, number: int, placed: datetime) -> "Order":
    from django.conf import settings

    from shop.orders.models import Order, OrderStatus

    roll = rng.randrange(100)
    status = (
        OrderStatus.PAID
        if roll < 85
        else OrderStatus.REFUNDED
        if roll < 88
        else OrderStatus.EXPIRED
        if roll < 93
        else OrderStatus.FAILED
        if roll < 96
        else OrderStatus.PENDING
    )
    paid = status in (OrderStatus.PAID, OrderStatus.REFUNDED)
    amount = 650 * rng.randint(1, 12)
    refunded = amount if status == OrderStatus.REFUNDED else 0
    if status == OrderStatus.PAID and roll < 2:
        refunded = amount // 2
    order = Order(
        reference=f"ord_overview{number:08d}",
        # One open checkout per browser: a pending order has a browser of its own.
        customer_key=f"overview-{number if status == OrderStatus.PENDING else number % 20_000}",
        status=status,
        currency=settings.SHOP_CURRENCY,
        amount_total=amount,
        amount_refunded=refunded,
        cart_key="overview",
        checkout_expires_at=placed + timedelta(minutes=settings.CHECKOUT_SESSION_MINUTES),
        payment_intent_id=f"pi_overview{number:08d}" if paid else "",
        disputed=paid and rng.randrange(1000) == 0,
        needs_review=rng.randrange(1000) == 0,
        review_reason="",
        created_at=placed,
        paid_at=placed + timedelta(minutes=rng.randint(1, 20)) if paid else None,
    )
    if order.needs_review:
        order.review_reason = "Paid after its checkout expired."
    return order


def _lines(rng: random.Random, *, order: "Order", products: Sequence["Product"]) -> Iterator[Any]:
    from shop.orders.models import OrderLine

    for product in rng.sample(list(products), rng.randint(1, min(3, len(products)))):
        yield OrderLine(
            order=order,
            product=product,
            product_name=product.name,
            unit_amount=product.unit_amount,
            quantity=rng.randint(1, 4),
        )


def _refund(rng: random.Random, *, order: "Order", now: datetime) -> Any:
    from shop.refunds.models import Refund, RefundOrigin, RefundStatus

    assert order.paid_at is not None
    return Refund(
        order=order,
        payment_intent_id=order.payment_intent_id,
        provider_refund_id=f"re_overview{order.pk}",
        amount=order.amount_refunded,
        currency=order.currency,
        status=RefundStatus.SUCCEEDED,
        origin=RefundOrigin.SHOP,
        created_at=min(now, order.paid_at + timedelta(days=rng.randint(0, 10))),
    )


def _dispute(order: "Order") -> Any:
    from shop.refunds.models import Dispute

    assert order.paid_at is not None
    return Dispute(
        provider_dispute_id=f"dp_overview{order.pk}",
        order=order,
        payment_intent_id=order.payment_intent_id,
        amount=order.amount_total,
        currency=order.currency,
        reason="fraudulent",
        status="needs_response",
        evidence_due_by=order.paid_at + timedelta(days=14),
        created_at=order.paid_at + timedelta(days=3),
    )


def _analyze() -> None:
    """What autovacuum does on its own within a minute of a bulk insert (and SQLite's ANALYZE,
    which a long-running shop gets from `PRAGMA optimize`)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def _explain(sql: str) -> str:
    from django.db import connection

    prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN ANALYZE "
    with connection.cursor() as cursor:
        cursor.execute(prefix + sql)
        return "\n".join("    " + " ".join(str(c) for c in row) for row in cursor.fetchall())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--pg-bin", default="/usr/lib/postgresql/15/bin")
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=365, help="the orders span this many days")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--time-zone", default="UTC", help="SHOP_TIME_ZONE")
    parser.add_argument("--explain", action="store_true", help="print each statement's plan")
    args = parser.parse_args()
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shop-overview-")))
        if args.backend == "postgres":
            from devtools.pgcluster import postgres_cluster

            database_url = stack.enter_context(postgres_cluster(args.pg_bin))
        else:
            database_url = f"sqlite:///{work / 'overview.sqlite3'}"
        os.environ.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DJANGO_DEBUG="false",
            DJANGO_SECURE_SSL_REDIRECT="false",
            DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
            DJANGO_ALLOWED_HOSTS="testserver",
            SHOP_DEMO_PAYMENTS="true",
            SHOP_TIME_ZONE=args.time_zone,
            DATABASE_URL=database_url,
            REDIS_URL="",
        )
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        orders_for_overview_create(count=args.orders, days=args.days)
        print(
            f"{args.backend}: {args.orders:,} orders over {args.days} days built in "
            f"{time.perf_counter() - started:.0f} s"
        )
        timing = overview_time(requests=args.requests)
        print(
            f"{overview_url()}: median {timing.median_ms:.1f} ms, best {timing.best_ms:.1f} ms, "
            f"{timing.cpu_ms:.1f} ms of this process's CPU per request ({timing.requests} "
            f"requests), {len(timing.statements)} statements:"
        )
        for statement in timing.statements:
            print(f"  {statement.ms:7.2f} ms  {statement.sql}")
            if args.explain and statement.sql.lstrip().upper().startswith("SELECT"):
                print(_explain(statement.sql))
    return 0


if __name__ == "__main__":
    sys.exit(main())
