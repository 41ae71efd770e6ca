"""Where a request's time goes: `python -m bench.profile [--backend sqlite] [--profile] SCENARIO...`

Serves each scenario's request in process, straight through the WSGI application gunicorn
runs (production settings, the whole middleware stack), and prints the CPU per request of this
process (and, on PostgreSQL, of the database server) next to the floor's. With --profile it
prints a cProfile profile of each scenario. The fake Stripe server answers from this process,
so checkout figures include its CPU. Much quicker than `make bench` for checking one change;
`make bench` stays the measure of record.

Scenarios: floor, storefront_first, storefront_empty, storefront_1000, checkout_same_cart,
checkout_new_browser, checkout_alternating, webhook_distinct, webhook_duplicate.
"""

import argparse
import cProfile
import io
import itertools
import logging
import os
import pstats
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.backend import webhook_request
from bench.load import Request, cpu_seconds, postgres_pids
from devtools.fakestripe import FakeStripe
from devtools.pgcluster import postgres_cluster

SCENARIOS = [
    "floor",
    "storefront_first",
    "storefront_empty",
    "storefront_1000",
    "checkout_same_cart",
    "checkout_new_browser",
    "checkout_alternating",
    "webhook_distinct",
    "webhook_duplicate",
]
FORM = "application/x-www-form-urlencoded"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="default: all")
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--requests", type=int, default=400, help="timed requests per scenario")
    parser.add_argument("--profile", action="store_true", help="print cProfile statistics")
    args = parser.parse_args()
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario {', '.join(sorted(unknown))}; choose from {SCENARIOS}")
    args.scenarios = args.scenarios or list(SCENARIOS)
    if "floor" not in args.scenarios:
        args.scenarios.insert(0, "floor")
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shop-profile-")))
        fake = stack.enter_context(FakeStripe())
        if args.backend == "postgres":
            database_url = stack.enter_context(postgres_cluster())
        else:
            database_url = f"sqlite:///{work / 'profile.sqlite3'}"
        os.environ.update(
            DJANGO_SETTINGS_MODULE="bench.settings",
            DJANGO_DEBUG="false",
            DJANGO_SECURE_SSL_REDIRECT="false",
            DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
            DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
            REDIS_URL="",
            STRIPE_WEBHOOK_ALLOWED_IPS="",
            CHECKOUT_RATE_PER_IP="100000000/m",
            CHECKOUT_RATE_PER_BROWSER="100000000/m",
            DATABASE_URL=database_url,
            STRIPE_SECRET_KEY=fake.api_key,
            STRIPE_API_BASE=fake.url,
            STRIPE_WEBHOOK_SECRET=fake.webhook_secret,
        )
        from config.wsgi import application  # sets Django up

        logging.getLogger("shop").setLevel(logging.WARNING)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        shop = Shop(application, fake, args.backend)
        floor = None
        for name in args.scenarios:
            requests = getattr(shop, name)()
            ms, db_ms = shop.measure(requests, count=args.requests, profile=args.profile)
            if name == "floor":
                floor = ms + db_ms
            ratio = f"  x floor {floor / (ms + db_ms):.2f}" if floor else ""
            print(f"{name:24} {ms + db_ms:6.2f} ms CPU/req (app {ms:.2f} + db {db_ms:.2f}){ratio}")
    return 0


class Shop:
    def __init__(self, application: Any, fake: FakeStripe, backend: str) -> None:
        from shop.catalogue.models import Product

        self.app = application
        self.fake = fake
        self.backend = backend
        self.products = list(Product.objects.filter(active=True).order_by("position", "id"))
        page = self.call(Request("GET", "/"))
        self.csrf_cookie = page["cookies"]["csrftoken"]
        body = page["body"].decode()
        self.csrf_token = body.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]

    # -- scenarios: each returns an endless supply of requests ------------------------------

    def floor(self) -> Iterator[Request]:
        return itertools.repeat(Request("GET", "/bench/floor"))

    def storefront_first(self) -> Iterator[Request]:
        return itertools.repeat(Request("GET", "/"))

    def storefront_empty(self) -> Iterator[Request]:
        return self._storefront(self._browser("profile-empty"))

    def storefront_1000(self) -> Iterator[Request]:
        from bench import data

        data.paid_orders_create(
            customer_key="profile-history", count=1000, products=self.products, tag="hist"
        )
        return self._storefront(self._browser("profile-history"))

    def checkout_same_cart(self) -> Iterator[Request]:
        cart = {self.products[0].pk: 1}
        return itertools.repeat(self._checkout(cart, self._checkout_browser(cart)))

    def checkout_new_browser(self) -> Iterator[Request]:
        return itertools.repeat(self._checkout({self.products[0].pk: 1}, None))

    def checkout_alternating(self) -> Iterator[Request]:
        cart_a, cart_b = {self.products[0].pk: 1}, {self.products[0].pk: 2}
        browsers = [self._checkout_browser(cart_a) for _ in range(32)]
        return itertools.cycle(
            [self._checkout(cart, b) for cart in (cart_b, cart_a) for b in browsers]
        )

    def webhook_distinct(self) -> Iterator[Request]:
        from bench import data

        events = data.Events(self.fake)
        orders = data.pending_orders_create(
            count=3000, products=self.products, fake=self.fake, tag=secrets.token_hex(3)
        )
        return (webhook_request(*event) for event in events.completed_many(orders))

    def webhook_duplicate(self) -> Iterator[Request]:
        from bench import data

        (order,) = data.pending_orders_create(
            count=1, products=self.products, fake=self.fake, tag=secrets.token_hex(3)
        )
        return itertools.repeat(webhook_request(*data.Events(self.fake).completed(order)))

    # -- serving ----------------------------------------------------------------------------

    def measure(
        self, requests: Iterator[Request], *, count: int, profile: bool
    ) -> tuple[float, float]:
        for _ in range(min(50, count)):
            self.call(next(requests))
        batch = [next(requests) for _ in range(count)]
        database = self._database_pids()
        profiler = cProfile.Profile() if profile else None
        if profiler is not None:
            profiler.enable()
        app_before, db_before = time.process_time(), cpu_seconds(database)
        for request in batch:
            self.call(request)
        app, db = time.process_time() - app_before, cpu_seconds(database) - db_before
        if profiler is not None:
            profiler.disable()
            stats = pstats.Stats(profiler).strip_dirs()
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(60)
        return app * 1000 / count, db * 1000 / count

    def call(self, request: Request) -> dict[str, Any]:
        status: list[str] = []
        headers: list[tuple[str, str]] = []

        def start_response(code: str, response_headers: list[tuple[str, str]], *_: Any) -> None:
            status.append(code)
            headers.extend(response_headers)

        response = self.app(_environ(request), start_response)
        try:
            body = b"".join(response)
        finally:
            getattr(response, "close", lambda: None)()
        code = int(status[0].split()[0])
        if code >= 400:
            raise RuntimeError(f"{request.method} {request.path}: {status[0]}\n{body[:500]!r}")
        cookies = {}
        for name, value in headers:
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                cookies[key.strip()] = rest.split(";", 1)[0]
        return {"status": code, "body": body, "cookies": cookies}

    def _browser(self, customer_key: str) -> str:
        from bench import data

        return data.browser_cookie(customer_key=customer_key)

    def _checkout_browser(self, cart: dict[int, int]) -> str:
        from shop.web.customer import COOKIE_NAME

        return f"{COOKIE_NAME}={self.call(self._checkout(cart, None))['cookies'][COOKIE_NAME]}"

    def _storefront(self, browser: str) -> Iterator[Request]:
        cookie = f"csrftoken={self.csrf_cookie}; {browser}"
        return itertools.repeat(Request("GET", "/", {"Cookie": cookie}))

    def _checkout(self, cart: dict[int, int], browser: str | None) -> Request:
        form = {"csrfmiddlewaretoken": self.csrf_token}
        form.update({f"quantity-{p.pk}": str(cart.get(p.pk, 0)) for p in self.products})
        cookie = f"csrftoken={self.csrf_cookie}" + (f"; {browser}" if browser else "")
        return Request(
            "POST", "/checkout/", {"Cookie": cookie, "Content-Type": FORM}, urlencode(form).encode()
        )

    def _database_pids(self) -> list[int]:
        return postgres_pids() if self.backend == "postgres" else []


def _environ(request: Request) -> dict[str, Any]:
    path, _, query = request.path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(request.body)) if request.body else "",
        "HTTP_HOST": "127.0.0.1:8000",
    }
    for name, value in request.headers.items():
        key = name.upper().replace("-", "_")
        if key in {"CONTENT_TYPE", "CONTENT_LENGTH"}:
            environ[key] = value
        else:
            environ["HTTP_" + key] = value
    return environ


if __name__ == "__main__":
    sys.exit(main())
