"""Fixtures for the browser tests: one headless Chromium, the live Django server, a shopper.

Every test here drives the real app through the system Chromium over pytest-django's
`live_server`; Playwright never downloads a browser of its own.
"""

import importlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    BrowserType,
    Page,
    Playwright,
    sync_playwright,
)

from shop.catalogue.models import Product
from tests.browser.support import DESKTOP, login

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The catalogue the data migration seeds; a transactional test's flush removes it, so each
# browser test puts it back (see `products`).
CATALOGUE = importlib.import_module("shop.migrations.0002_products").PRODUCTS


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="package", autouse=True)
def _orm_beside_playwright() -> Iterator[None]:
    # Playwright's sync API keeps an asyncio loop running in the test thread, and Django refuses
    # ORM calls from a thread with a running loop. The calls here are plain synchronous test
    # code, so the check is switched off for the browser tests only.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


# Playwright keeps an asyncio loop running in the test thread while it is started: started and
# stopped with this package, so the loop (and the ORM switch above) end with the browser tests.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="package")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    return getattr(playwright, browser_name)  # type: ignore[no-any-return]


@pytest.fixture(scope="package")
def launch_browser(
    browser_type_launch_args: dict[str, Any], browser_type: BrowserType
) -> Callable[..., Browser]:
    return lambda **kwargs: browser_type.launch(**{**browser_type_launch_args, **kwargs})


@pytest.fixture(scope="package")
def browser(launch_browser: Callable[..., Browser]) -> Iterator[Browser]:
    browser = launch_browser()
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"No Chromium at {CHROMIUM}: apt-get install chromium, or set CHROMIUM.")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "headless": True,
        "args": CHROMIUM_ARGS,
    }


@pytest.fixture(scope="session")
def base_url(live_server: Any) -> str:
    return str(live_server.url)


@pytest.fixture(scope="package")
def browser_context_args(base_url: str) -> dict[str, Any]:
    # A fixed locale and time zone: dates are shown in the customer's terms, so the tests pin
    # which customer that is.
    return {
        "base_url": base_url,
        "viewport": DESKTOP,
        "locale": "en-US",
        "timezone_id": "America/New_York",
    }


@pytest.fixture
def products(live_server: Any) -> list[Product]:
    for name, description, unit_amount, position in CATALOGUE:
        Product.objects.get_or_create(
            name=name,
            defaults={"description": description, "unit_amount": unit_amount, "position": position},
        )
    return list(Product.objects.order_by("position"))


class PageProblems:
    """Script errors, console errors (CSP violations among them) and failed subresources."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def watch(self, page: Page) -> Page:
        page.on("pageerror", lambda error: self.messages.append(f"page error: {error}"))
        page.on("console", self._console)
        page.on("response", self._response)
        return page

    def _console(self, message: Any) -> None:
        # Chromium logs every 4xx document as "Failed to load resource"; failed subresources
        # are caught by `_response` instead, and error pages are expected in some tests.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.messages.append(f"console: {message.text}")

    def _response(self, response: Any) -> None:
        if response.status >= 400 and response.request.resource_type != "document":
            self.messages.append(
                f"{response.status} for {response.request.resource_type} {response.url}"
            )


@pytest.fixture
def problems() -> PageProblems:
    return PageProblems()


@pytest.fixture
def page(page: Page, problems: PageProblems) -> Iterator[Page]:
    """Pytest-playwright's page, failing the test on any script, CSP or resource error."""
    problems.watch(page)
    yield page
    assert problems.messages == []


@pytest.fixture
def new_page(
    browser: Browser,
    browser_context_args: dict[str, Any],
    problems: PageProblems,
) -> Iterator[Callable[..., Page]]:
    """Open a page in a fresh context (another browser, own cookies), e.g. new_page(viewport=PHONE)."""
    contexts: list[BrowserContext] = []

    def make(**kwargs: Any) -> Page:
        contexts.append(browser.new_context(**{**browser_context_args, **kwargs}))
        return problems.watch(contexts[-1].new_page())

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def customer(page: Page, base_url: str) -> str:
    """Make `page`'s browser a returning customer, and return its key (its orders carry it)."""
    key = "browser-test-customer"
    login(page, base_url=base_url, customer_key=key)
    return key


@pytest.fixture
def worker(live_server: Any, smtp: Any, settings: Any) -> Iterator[None]:
    """The real database worker in a thread of this process, sending to the suite's SMTP server,
    with links pointing at the live server."""
    from django.db import connections
    from django_tasks_db.management.commands.db_worker import Worker

    settings.SHOP_BASE_URL = live_server.url
    background = Worker(
        queue_names=["default"],
        interval=0.1,
        batch=False,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="browser-test-worker",
        excluded_queue_names=[],
    )

    def run() -> None:
        try:
            background.run()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name="db-worker", daemon=True)
    thread.start()
    yield
    background.running = False
    thread.join(timeout=30)
