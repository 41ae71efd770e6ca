"""The bench's one set-up, and the shop as browsers and Stripe use it.

`environment` makes the temporary directory, starts the fake Stripe and the database, sets the
settings (production ones, through `bench.settings`), collects static files and migrates;
`gunicorn` serves the shop from it. `Shop` serves requests in process through the WSGI
application gunicorn serves, and builds the requests a browser and Stripe send: the storefront,
the checkout form with its CSRF token, and Stripe's signed webhook for what the fake says
happened.
"""

import io
import json
import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from wsgiref.util import setup_testing_defaults

from devtools.fakestripe import FakeStripe
from devtools.pgcluster import DEFAULT_BIN, postgres_cluster
from devtools.servers import app_servers

PROJECT = Path(__file__).resolve().parent.parent
RATE_NEVER_REACHED = "100000000/m"
CUSTOMER_COOKIE = "shop_customer"  # shop.web.customer.COOKIE_NAME, readable before set-up


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k.lower() == name.lower()), "")

    def cookie(self, name: str) -> str | None:
        jar: SimpleCookie = SimpleCookie()
        for key, value in self.headers:
            if key.lower() == "set-cookie":
                jar.load(value)
        return jar[name].value if name in jar else None


@dataclass(frozen=True)
class Environment:
    backend: str
    work: Path
    fake: FakeStripe
    shop: "Shop"
    server_env: dict[str, str]  # what an app server needs on top of the settings


@contextmanager
def environment(backend: str, *, pg_bin: str = DEFAULT_BIN) -> Iterator[Environment]:
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shop-bench-")))
        fake = stack.enter_context(FakeStripe())
        if backend == "postgres":
            database_url = stack.enter_context(postgres_cluster(pg_bin))
        else:
            database_url = f"sqlite:///{work / 'bench.sqlite3'}"
        server_env = {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "BENCH_STATIC_ROOT": str(work / "static"),
            # Set, even empty, so a developer's .env cannot switch these on for the bench.
            "REDIS_URL": "",
            "STRIPE_WEBHOOK_ALLOWED_IPS": "",
            "CHECKOUT_RATE_PER_IP": RATE_NEVER_REACHED,
            "CHECKOUT_RATE_PER_BROWSER": RATE_NEVER_REACHED,
            "DATABASE_URL": database_url,
            "STRIPE_SECRET_KEY": fake.api_key,
            "STRIPE_API_BASE": fake.url,
            "STRIPE_WEBHOOK_SECRET": fake.webhook_secret,
            # A shop with an owner: a payment owes two emails (customer, owner), as it would.
            "SHOP_OWNER_EMAIL": "owner@shop.example",
        }
        os.environ.update(server_env)
        import django
        from django.core.management import call_command

        django.setup()
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("migrate", verbosity=0)
        from config.wsgi import application  # after collectstatic: WhiteNoise lists the files

        # The app servers' log has the shop's lines; building data in process needs none.
        logging.getLogger("shop").setLevel(logging.WARNING)
        logging.getLogger("django.request").setLevel(logging.ERROR)
        yield Environment(backend, work, fake, Shop(application, fake), server_env)


@dataclass(frozen=True)
class Server:
    url: str
    port: int
    master: int  # gunicorn's arbiter; the workers are its children
    log: Path


@contextmanager
def gunicorn(
    env: Environment, *, workers: int, settings: dict[str, str] | None = None
) -> Iterator[Server]:
    """The shop under gunicorn's sync workers, with the environment's settings and database,
    and `settings` on top (environment variables named as the settings they set)."""
    from bench.load import children

    server_env = {**env.server_env, **(settings or {})}
    with app_servers(1, server_env, env.work, workers=workers, threads=1) as (url,):
        port = int(url.rsplit(":", 1)[1])
        for pid in children(os.getpid()):
            if f"127.0.0.1:{port}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                deadline = time.monotonic() + 60
                while len(children(pid)) < workers and time.monotonic() < deadline:
                    time.sleep(0.1)
                yield Server(url, port, pid, env.work / f"gunicorn-{port}.log")
                return
        raise RuntimeError(f"no gunicorn process serving {url}")


class Shop:
    def __init__(self, application: Any, fake: FakeStripe) -> None:
        self.app = application
        self.fake = fake
        self.browsers: dict[str, str] = {}  # name -> its customer cookie, "shop_customer=..."
        self.data_done: dict[str, str] = {}  # data step -> what it made
        # What a browser gets with the page: the CSRF cookie and token, the form's fields.
        page = self.expect(Request("GET", "/"), 200)
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
        self.csrf_cookie = page.cookie("csrftoken")
        self.fields = [f.decode() for f in re.findall(rb'name="(quantity-\d+)"', page.body)]
        if not (token and self.csrf_cookie and self.fields):
            raise RuntimeError("no CSRF token, CSRF cookie or quantity fields on the storefront")
        self.csrf_token = token.group(1).decode()

    def prepare(self, steps: Sequence[Callable[["Shop"], str]]) -> list[str]:
        """Run the data steps not run yet, in order; say what each made."""
        made = []
        for step in steps:
            if step.__name__ not in self.data_done:
                self.data_done[step.__name__] = step(self)
                made.append(f"{step.__name__}: {self.data_done[step.__name__]}")
        return made

    # -- requests ----------------------------------------------------------------------------

    def cart(self, *quantities: int) -> dict[str, int]:
        """Quantities for the form's products, in their order on the page."""
        return dict(zip(self.fields, quantities, strict=False))

    def storefront(self, browser: str | None = None) -> Request:
        return Request("GET", "/", {"Cookie": self._cookies(browser)})

    def checkout(self, cart: dict[str, int], browser: str | None = None) -> Request:
        form = {"csrfmiddlewaretoken": self.csrf_token}
        form.update({name: str(cart.get(name, 0)) for name in self.fields})
        headers = {"Cookie": self._cookies(browser)}
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return Request("POST", "/checkout/", headers, urlencode(form).encode())

    def paid(self, session_id: str) -> Request:
        """The customer pays on Stripe's page: Stripe's signed checkout.session.completed."""
        self.fake.complete(session_id)
        event = self.fake.session_event("checkout.session.completed", session_id)
        body = json.dumps(event, indent=2).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": self.fake.sign(body),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        return Request("POST", "/stripe/webhook/", headers, body)

    def _cookies(self, browser: str | None) -> str:
        return f"csrftoken={self.csrf_cookie}" + (f"; {browser}" if browser else "")

    # -- the flows ---------------------------------------------------------------------------

    def start_checkout(self, cart: dict[str, int], browser: str | None = None) -> tuple[str, str]:
        """Press Buy: the browser's customer cookie and its Checkout Session's id."""
        response = self.expect(self.checkout(cart, browser), 303)
        value = response.cookie(CUSTOMER_COOKIE)
        session_id = response.header("Location").rsplit("/", 1)[-1]
        return (f"{CUSTOMER_COOKIE}={value}" if value else browser or ""), session_id

    def buy(self, cart: dict[str, int], browser: str | None = None) -> str:
        """Press Buy, pay, and have Stripe's webhook delivered; returns the browser."""
        browser, session_id = self.start_checkout(cart, browser)
        self.expect(self.paid(session_id), 200)
        return browser

    # -- serving -----------------------------------------------------------------------------

    def call(self, request: Request) -> Response:
        path, _, query = request.path.partition("?")
        environ: dict[str, Any] = {"REQUEST_METHOD": request.method, "PATH_INFO": path}
        environ.update(QUERY_STRING=query, REMOTE_ADDR="127.0.0.1")
        environ.update({"wsgi.input": io.BytesIO(request.body), "wsgi.multiprocess": True})
        environ["CONTENT_LENGTH"] = str(len(request.body)) if request.body else ""
        for name, value in request.headers.items():
            key = name.upper().replace("-", "_")
            environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
        setup_testing_defaults(environ)
        started: list[Any] = []
        result = self.app(environ, lambda *args: started.extend(args[:2]))
        try:
            body = b"".join(result)
        finally:
            getattr(result, "close", lambda: None)()
        return Response(int(started[0].split()[0]), started[1], body)

    def expect(self, request: Request, status: int) -> Response:
        response = self.call(request)
        if response.status != status:
            raise RuntimeError(
                f"{request.method} {request.path} answered {response.status}, not {status}: "
                f"{response.body[:300]!r}"
            )
        return response

    def count(self, request: Request) -> tuple[int, int, int]:
        """SQL statements and Stripe calls of one request, and its status."""
        from django.db import connection, connections
        from django.test.utils import CaptureQueriesContext

        stripe_before = len(self.fake.requests)
        with CaptureQueriesContext(connection) as queries:
            status = self.call(request).status
        connections.close_all()  # no open snapshot or lock while the servers are loaded
        return len(queries.captured_queries), len(self.fake.requests) - stripe_before, status
