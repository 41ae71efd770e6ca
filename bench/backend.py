"""One database's half of `make bench`: `python -m bench.backend postgres|sqlite OUT.json`.

Runs in its own process because Django's settings (and so the database) are fixed per process.
Starts the fake Stripe server and the database, migrates, serves the shop with gunicorn, then
runs each scenario with wrk and counts its SQL queries in process with the test client.
"""

import argparse
import itertools
import json
import logging
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import django

from bench.load import (
    Gunicorn,
    LoadResult,
    Request,
    cpu_seconds,
    fetch,
    gunicorn,
    postgres_pids,
    write_requests,
    wrk,
)
from devtools.fakestripe import FakeStripe
from devtools.pgcluster import postgres_cluster

WORKERS = 2
HISTORY_ORDERS = 1_000
OTHER_ORDERS = 100_000
OTHER_CUSTOMERS = 20_000
ALTERNATING_BROWSERS = 64
WEBHOOK_CALIBRATION_EVENTS = 300
FORM = "application/x-www-form-urlencoded"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("backend", choices=["postgres", "sqlite"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--floor-seconds", type=float, default=1.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--pg-bin", default="/usr/lib/postgresql/15/bin")
    args = parser.parse_args()
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shop-bench-")))
        fake = stack.enter_context(FakeStripe())
        if args.backend == "postgres":
            database_url = stack.enter_context(postgres_cluster(args.pg_bin))
        else:
            database_url = f"sqlite:///{work / 'bench.sqlite3'}"
        os.environ.update(
            DATABASE_URL=database_url,
            STRIPE_SECRET_KEY=fake.api_key,
            STRIPE_API_BASE=fake.url,
            STRIPE_WEBHOOK_SECRET=fake.webhook_secret,
        )
        django.setup()
        # The server's log has the shop's lines; the in-process query counts need none.
        logging.getLogger("shop").setLevel(logging.WARNING)
        logging.getLogger("django.request").setLevel(logging.ERROR)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        server = stack.enter_context(
            gunicorn(workers=WORKERS, env=dict(os.environ), log=work / "gunicorn.log")
        )
        bench = Bench(
            backend=args.backend,
            server=server,
            fake=fake,
            work=work,
            seconds=args.seconds,
            warmup=args.warmup,
            connections=args.connections,
            rounds=args.rounds,
            floor_seconds=args.floor_seconds,
        )
        try:
            report = bench.run()
        except Exception:
            print(f"gunicorn log:\n{server.log_tail(60)}", file=sys.stderr)
            raise
        args.out.write_text(json.dumps(report, indent=2))
    return 0


class Bench:
    def __init__(
        self,
        *,
        backend: str,
        server: Gunicorn,
        fake: FakeStripe,
        work: Path,
        seconds: float,
        warmup: float,
        connections: int,
        rounds: int,
        floor_seconds: float,
    ) -> None:
        from shop.catalogue.models import Product

        self.backend = backend
        self.server = server
        self.fake = fake
        self.work = work
        self.seconds = seconds
        self.warmup = warmup
        self.connections = connections
        self.rounds = rounds
        self.floor_seconds = floor_seconds
        self.floor_file = self._write("floor", [Request("GET", "/bench/floor")])
        self.products = list(Product.objects.filter(active=True).order_by("position", "id"))
        self.results: list[dict[str, Any]] = []
        self.checks: dict[str, Any] = {}
        self.csrf_cookie, self.csrf_token = self._csrf()

    # -- scenarios --------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from bench import data

        self.measure(
            "floor",
            "Floor: bare Django view",
            self.floor_file,
            queries=lambda c: c.get("/bench/floor"),
        )

        self.measure(
            "storefront_first",
            "Storefront, first-time visitor (no cookies)",
            [Request("GET", "/")],
            queries=lambda c: c.get("/"),
        )
        empty = data.browser_cookie(customer_key="bench-empty")
        self.storefront("storefront_empty", "Storefront, returning browser, no orders", empty)
        data.paid_orders_create(
            customer_key="bench-history", count=HISTORY_ORDERS, products=self.products, tag="hist"
        )
        history = data.browser_cookie(customer_key="bench-history")
        self.storefront("storefront_1000", "Storefront, browser with 1,000 paid orders", history)

        self.checkout_scenarios()
        self.webhook_scenarios()

        self.progress(
            f"inserting {OTHER_ORDERS:,} orders of {OTHER_CUSTOMERS:,} other browsers "
            f"and their {OTHER_ORDERS:,} webhook events"
        )
        started = time.monotonic()
        data.other_customers_orders_create(
            count=OTHER_ORDERS, customers=OTHER_CUSTOMERS, products=self.products
        )
        data.past_webhook_events_create(count=OTHER_ORDERS)
        self.checks["bulk_insert_seconds"] = round(time.monotonic() - started, 1)
        self.measure(
            "storefront_first_100k",
            "Storefront, first-time visitor, +100k orders",
            [Request("GET", "/")],
            queries=lambda c: c.get("/"),
        )
        self.storefront("storefront_empty_100k", "Storefront, no orders, +100k orders", empty)
        self.storefront(
            "storefront_1000_100k", "Storefront, 1,000 paid orders, +100k orders", history
        )
        self.webhook_scenarios(suffix="_100k", note=", +100k orders and events")
        self.measure(
            "floor_end",
            "Floor again, at the end",
            self.floor_file,
            queries=lambda c: c.get("/bench/floor"),
        )
        return {
            "backend": self.backend,
            "database_version": _database_version(),
            "settings": _settings_summary(),
            "workers": WORKERS,
            "connections": self.connections,
            "seconds": self.seconds,
            "rounds": self.rounds,
            "floor_seconds": self.floor_seconds,
            "warmup": self.warmup,
            "results": self.results,
            "checks": self.checks,
        }

    def storefront(self, key: str, label: str, browser: str) -> None:
        cookie = f"csrftoken={self.csrf_cookie}; {browser}"
        self.measure(
            key,
            label,
            [Request("GET", "/", {"Cookie": cookie})],
            queries=lambda c: c.get("/", headers={"Cookie": cookie}),
        )

    def checkout_scenarios(self) -> None:
        cart_a = {self.products[0].pk: 1, self.products[-1].pk: 2}
        cart_b = {self.products[0].pk: 2}

        browser = self._checkout_browser(cart_a)
        self.measure(
            "checkout_same_cart",
            "Checkout, same browser and cart again (reuses its session)",
            [self._checkout_request(cart_a, browser)],
            expected={303},
            queries=lambda c: c.post("/checkout/", self._form(cart_a)),
        )

        def new_browser(client: Any) -> Any:
            client.cookies.clear()
            return client.post("/checkout/", self._form(cart_a))

        self.measure(
            "checkout_new_browser",
            "Checkout, a new browser each request (new session)",
            [self._checkout_request(cart_a, None)],
            expected={303},
            queries=new_browser,
        )
        browsers = [self._checkout_browser(cart_a) for _ in range(ALTERNATING_BROWSERS)]
        carts = itertools.cycle([cart_a, cart_b])
        self.measure(
            "checkout_alternating",
            f"Checkout, {ALTERNATING_BROWSERS} browsers switching carts (expire + new session)",
            [self._checkout_request(cart, b) for cart in (cart_b, cart_a) for b in browsers],
            expected={303},
            queries=lambda c: c.post("/checkout/", self._form(next(carts))),
        )

    def webhook_scenarios(self, *, suffix: str = "", note: str = "") -> None:
        from bench import data
        from shop.orders.models import Order, OrderStatus
        from shop.payments.models import WebhookDelivery

        events = data.Events(self.fake)
        stripe_calls_before = len(self.fake.requests)
        tag = suffix.strip("_")

        calibration = data.pending_orders_create(
            count=WEBHOOK_CALIBRATION_EVENTS, products=self.products, fake=self.fake, tag=f"c{tag}"
        )
        calibration_file = self._write(
            f"webhook-calibration{suffix}",
            (webhook_request(*event) for event in events.completed_many(calibration)),
        )
        warm = self.wrk(calibration_file, seconds=self.warmup, once=True)
        # Enough distinct events that the timed run ends on time, not because they ran out.
        count = (
            math.ceil(max(warm.rps, 50) * self.seconds * 1.5) + 200 + self.rounds * self.connections
        )
        self.progress(f"creating {count:,} pending orders and signed events")
        orders = data.pending_orders_create(
            count=count, products=self.products, fake=self.fake, tag=f"w{tag}"
        )
        spares = [
            events.completed(order)
            for order in data.pending_orders_create(
                count=2, products=self.products, fake=self.fake, tag=f"q{tag}"
            )
        ]
        distinct_file = self._write(
            f"webhook-distinct{suffix}",
            (webhook_request(*event) for event in events.completed_many(orders)),
        )
        since = WebhookDelivery.objects.order_by("-id").values_list("id", flat=True).first() or 0
        spare_events = iter(spares)
        result = self.measure(
            f"webhook_distinct{suffix}",
            f"Webhook checkout.session.completed, distinct orders{note}",
            distinct_file,
            warm=False,
            once=True,
            queries=lambda c: _post_event(c, *next(spare_events)),
        )
        self.checks[f"webhook_distinct{suffix}_requests"] = result["requests"]
        self.checks[f"webhook_distinct{suffix}_orders_paid"] = Order.objects.filter(
            reference__in=[order.reference for order in orders],
            status=OrderStatus.PAID,
        ).count()
        self.checks[f"webhook_distinct{suffix}_duplicates_seen"] = WebhookDelivery.objects.filter(
            id__gt=since, outcome__startswith="duplicate"
        ).count()

        self.measure(
            f"webhook_duplicate{suffix}",
            f"Webhook, the same event delivered again{note}",
            [webhook_request(*spares[-1])],
            queries=lambda c: _post_event(c, *spares[-1]),
        )
        self.checks["webhook_stripe_calls"] = (
            self.checks.get("webhook_stripe_calls", 0)
            + len(self.fake.requests)
            - stripe_calls_before
        )

    # -- measuring --------------------------------------------------------------------------

    def measure(
        self,
        key: str,
        label: str,
        requests: Sequence[Request] | Path,
        *,
        queries: Callable[[Any], Any],
        expected: set[int] | None = None,
        warm: bool = True,
        once: bool = False,
    ) -> dict[str, Any]:
        """Load one scenario in rounds, each right after a short run of the floor, so both
        see the same machine: other processes on a shared box come and go."""
        expected = expected or {200}
        query_count, stripe_count, query_status = self._count_queries(queries)
        request_file = requests if isinstance(requests, Path) else self._write(key, requests)
        paired = request_file != self.floor_file
        if warm:
            self.wrk(request_file, seconds=self.warmup)
        loads, floors, skip = [], [], 0
        app_cpu = db_cpu = floor_cpu = 0.0
        stripe_before = len(self.fake.requests)
        for _ in range(self.rounds if paired else 1):
            if paired:
                floor, app, db = self.wrk_cpu(self.floor_file, seconds=self.floor_seconds)
                floors.append(floor)
                floor_cpu += app + db
            seconds = self.seconds / self.rounds if paired else self.floor_seconds * 3
            load, app, db = self.wrk_cpu(request_file, seconds=seconds, once=once, skip=skip)
            app_cpu += app
            db_cpu += db
            # Requests in flight when wrk stopped reached the server too: never resend them.
            skip += load.requests + self.connections
            loads.append(load)
        load = LoadResult.merge(loads)
        floor = LoadResult.merge(floors) if paired else load
        if not paired:
            floor_cpu = app_cpu + db_cpu
        per_request = 1000 / load.requests if load.requests else 0.0
        cpu_ms = (app_cpu + db_cpu) * per_request
        floor_cpu_ms = 1000 * floor_cpu / floor.requests if floor.requests else 0.0
        result = _result_row(key, label, load, expected)
        result.update(
            floor_rps=round(floor.rps, 1),
            ratio=round(load.rps / floor.rps, 3) if floor.rps else 0.0,
            cpu_ms=round(cpu_ms, 2),
            app_cpu_ms=round(app_cpu * per_request, 2),
            db_cpu_ms=round(db_cpu * per_request, 2),
            floor_cpu_ms=round(floor_cpu_ms, 2),
            cpu_ratio=round(floor_cpu_ms / cpu_ms, 3) if cpu_ms else 0.0,
            loadavg=os.getloadavg()[0],
            queries=query_count,
            queries_status=query_status,
            stripe_calls_per_request=stripe_count,
            stripe_calls_under_load=len(self.fake.requests) - stripe_before,
            worker_rss_mib=[round(r, 1) for r in self.server.worker_rss_mib()],
        )
        self.results.append(result)
        self.progress(
            f"{label}: {result['rps']:.0f} req/s = {result['ratio']:.2f} x floor "
            f"({result['floor_rps']:.0f}), CPU {cpu_ms:.1f} ms/req = "
            f"{result['cpu_ratio']:.2f} x floor, p50 {result['p50_ms']:.1f} ms, "
            f"p99 {result['p99_ms']:.1f} ms, {query_count} queries"
            + (f", {result['unexpected']} unexpected" if result["unexpected"] else "")
        )
        return result

    def wrk(
        self, request_file: Path, *, seconds: float, once: bool = False, skip: int = 0
    ) -> LoadResult:
        return self.wrk_cpu(request_file, seconds=seconds, once=once, skip=skip)[0]

    def wrk_cpu(
        self, request_file: Path, *, seconds: float, once: bool = False, skip: int = 0
    ) -> tuple[LoadResult, float, float]:
        """One wrk run, and the CPU seconds the workers and the database server spent in it:
        unlike requests per second, those hardly move when other processes share the cores."""
        workers, database = self.server.worker_pids(), self._database_pids()
        app_before, db_before = cpu_seconds(workers), cpu_seconds(database)
        load = wrk(
            self.server.url,
            request_file,
            seconds=seconds,
            connections=self.connections,
            once=once,
            skip=skip,
        )
        app, db = cpu_seconds(workers) - app_before, cpu_seconds(database) - db_before
        self.server.wait_idle()
        return load, app, db

    def _database_pids(self) -> list[int]:
        # SQLite runs inside the workers.
        return postgres_pids() if self.backend == "postgres" else []

    def _count_queries(self, call: Callable[[Any], Any]) -> tuple[int, int, int]:
        """SQL statements and Stripe calls of one request through the whole middleware
        stack, in process; and its status."""
        from django.db import connection, connections
        from django.test import Client
        from django.test.utils import CaptureQueriesContext

        client = Client(SERVER_NAME="127.0.0.1")
        call(client)  # the first request of a new client may set up a session
        stripe_before = len(self.fake.requests)
        with CaptureQueriesContext(connection) as captured:
            response = call(client)
        stripe_calls = len(self.fake.requests) - stripe_before
        connections.close_all()  # no open read snapshot or lock while wrk runs
        return len(captured.captured_queries), stripe_calls, response.status_code

    def progress(self, message: str) -> None:
        print(f"[{self.backend}] {message}", file=sys.stderr, flush=True)

    # -- helpers ----------------------------------------------------------------------------

    def _write(self, name: str, requests: Any) -> Path:
        path = self.work / f"{name}.requests"
        write_requests(path, requests)
        return path

    def _csrf(self) -> tuple[str, str]:
        """A CSRF cookie and form token from the storefront, as a browser gets them."""
        page = fetch(self.server.port, Request("GET", "/"))
        cookie = page.cookies().get("csrftoken")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
        if page.status != 200 or not cookie or not token:
            raise RuntimeError(f"no CSRF cookie and token on the storefront ({page.status})")
        return cookie, token.group(1).decode()

    def _form(self, cart: dict[int, int]) -> dict[str, str]:
        return {f"quantity-{p.pk}": str(cart.get(p.pk, 0)) for p in self.products}

    def _checkout_request(self, cart: dict[int, int], browser: str | None) -> Request:
        form = {"csrfmiddlewaretoken": self.csrf_token, **self._form(cart)}
        cookie = f"csrftoken={self.csrf_cookie}"
        if browser:
            cookie += f"; {browser}"
        return Request(
            "POST", "/checkout/", {"Cookie": cookie, "Content-Type": FORM}, urlencode(form).encode()
        )

    def _checkout_browser(self, cart: dict[int, int]) -> str:
        """A browser that has started checkout for `cart`; returns its customer cookie."""
        from shop.web.customer import COOKIE_NAME

        response = fetch(self.server.port, self._checkout_request(cart, None))
        value = response.cookies().get(COOKIE_NAME)
        if response.status != 303 or not value:
            raise RuntimeError(f"checkout answered {response.status}: {response.body[:300]!r}")
        return f"{COOKIE_NAME}={value}"


def webhook_request(body: bytes, signature: str) -> Request:
    return Request(
        "POST",
        "/stripe/webhook/",
        {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature,
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        },
        body,
    )


def _post_event(client: Any, body: bytes, signature: str) -> Any:
    return client.post(
        "/stripe/webhook/",
        body,
        content_type="application/json",
        headers={"Stripe-Signature": signature},
    )


def _result_row(key: str, label: str, load: LoadResult, expected: set[int]) -> dict[str, Any]:
    return {
        "key": key,
        "label": label,
        "requests": load.requests,
        "seconds": round(load.seconds, 2),
        "rps": round(load.rps, 1),
        "p50_ms": round(load.percentile_ms(50), 2),
        "p90_ms": round(load.percentile_ms(90), 2),
        "p99_ms": round(load.percentile_ms(99), 2),
        "statuses": load.statuses,
        "errors": load.errors,
        "unexpected": load.unexpected(expected),
        "expected": sorted(expected),
        "exhausted": load.exhausted,
    }


def _database_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
            return "PostgreSQL " + str(cursor.fetchone()[0])
        cursor.execute("SELECT sqlite_version()")
        return "SQLite " + str(cursor.fetchone()[0])


def _settings_summary() -> dict[str, Any]:
    from django.conf import settings

    database = settings.DATABASES["default"]
    return {
        "DEBUG": settings.DEBUG,
        "CONN_MAX_AGE": database.get("CONN_MAX_AGE"),
        "CONN_HEALTH_CHECKS": database.get("CONN_HEALTH_CHECKS"),
        "SESSION_ENGINE": settings.SESSION_ENGINE,
        "CACHE": settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1],
        "STATICFILES_STORAGE": settings.STORAGES["staticfiles"]["BACKEND"].rsplit(".", 1)[-1],
    }


if __name__ == "__main__":
    sys.exit(main())
