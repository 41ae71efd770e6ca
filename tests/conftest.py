import importlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from django.test import Client
from django.utils import timezone

from devtools.fakestripe import FakeStripe
from devtools.smtp import SMTPSink
from shop.catalogue.models import Product
from shop.orders.models import Order
from shop.payments import stripe_gateway

WEBHOOK_URL = "/stripe/webhook/"


def pytest_runtest_setup(item: pytest.Item) -> None:
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    if item.get_closest_marker("postgres_only") and not engine.endswith("postgresql"):
        pytest.skip("needs a real PostgreSQL server (make test runs the suite on one)")


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    """The storefront caches fragments: no test sees another's (ids repeat across tests)."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="session")
def fake_stripe_server() -> Iterator[FakeStripe]:
    with FakeStripe() as server:
        yield server


@pytest.fixture
def fake_stripe(
    fake_stripe_server: FakeStripe, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> FakeStripe:
    """Real-mode shop: the real stripe SDK over real HTTP to the local fake Stripe."""
    fake_stripe_server.reset()
    settings.STRIPE_SECRET_KEY = fake_stripe_server.api_key
    settings.STRIPE_API_BASE = fake_stripe_server.url
    settings.CHECKOUT_ORIGIN = fake_stripe_server.url
    settings.STRIPE_WEBHOOK_SECRETS = [fake_stripe_server.webhook_secret]
    # Keep the SDK's and our own retry back-off short; the number of tries stays the same.
    monkeypatch.setattr(stripe.HTTPClient, "INITIAL_DELAY", 0.01)
    monkeypatch.setattr(stripe_gateway, "RATE_LIMIT_BACKOFF_SECONDS", 0.01)
    return fake_stripe_server


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SMTPSink]:
    with SMTPSink() as server:
        yield server


@pytest.fixture
def smtp(smtp_server: SMTPSink, settings: Any) -> SMTPSink:
    """Email goes over real SMTP to a server in the suite; read what it received."""
    smtp_server.reset()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = smtp_server.host
    settings.EMAIL_PORT = smtp_server.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_TIMEOUT = 5
    return smtp_server


def run_tasks(worker_id: str = "test-worker", max_tasks: int | None = None) -> int:
    """Run every task that is due (or the first `max_tasks`, in the worker's order) with the real
    database worker, in this process; how many ran."""
    from unittest import mock

    from django_tasks_db.management.commands import db_worker

    worker = db_worker.Worker(
        queue_names=["default"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=max_tasks,
        worker_id=worker_id,
        excluded_queue_names=[],
    )
    # As Django's test client does for requests: the test's transaction holds the connection,
    # so the worker must not close it between tasks.
    with mock.patch.object(db_worker, "close_old_connections", lambda: None):
        worker.run()
    return worker._run_tasks


def run_retries() -> int:
    """As if the pauses before waiting retries were over: run every task, due or not."""
    from django_tasks import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    DBTaskResult.objects.filter(status=TaskResultStatus.READY).update(run_after=timezone.now())
    return run_tasks()


@pytest.fixture
def demo(settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = ""


@pytest.fixture
def products(db: None) -> list[Product]:
    if not Product.objects.exists():
        # A transactional test before this one flushed the rows the data migration made.
        from django.apps import apps

        add_products = importlib.import_module("shop.migrations.0002_products").add_products
        add_products(apps, None)
    return list(Product.objects.order_by("position"))


def cart_form(products: list[Product], *quantities: int) -> dict[str, str]:
    return {f"quantity-{p.pk}": str(q) for p, q in zip(products, quantities, strict=False)}


def buy(client: Client, products: list[Product], *quantities: int) -> Any:
    return client.post("/checkout/", cart_form(products, *quantities))


def last_order() -> Order:
    return Order.objects.order_by("-id").first()  # type: ignore[return-value]


def post_event(
    client: Client,
    fake: FakeStripe,
    event: dict[str, Any],
    *,
    secret: str | None = None,
    signature: str | None = None,
) -> Any:
    body = json.dumps(event).encode()
    headers = {
        "HTTP_STRIPE_SIGNATURE": signature
        if signature is not None
        else fake.sign(body, secret=secret)
    }
    return client.post(WEBHOOK_URL, data=body, content_type="application/json", **headers)


def pay(client: Client, fake: FakeStripe, order: Order, **kw: Any) -> Any:
    """The customer pays on Stripe's page and Stripe sends checkout.session.completed."""
    fake.complete(order.checkout_session_id or "", **kw)
    return post_event(
        client,
        fake,
        fake.session_event("checkout.session.completed", order.checkout_session_id or ""),
    )
