"""`make run`, the README's first command, as a new user runs it: the shop and its worker side by
side (Makefile → Procfile → honcho), demo payments, a purchase from the storefront to the
customer's and the owner's emails."""

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devtools.servers import ROOT, free_port, wait_for, wait_until

# Not the settings of the suite: what a shell that never configured the shop has.
CONFIGURED = ("DJANGO_", "STRIPE_", "SHOP_", "EMAIL_", "DATABASE_URL")


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    if not (ROOT / ".venv" / "bin" / ".installed").exists():
        pytest.skip("`make install` has not made this checkout's .venv")
    port, log = free_port(), tmp_path / "make-run.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(CONFIGURED)}
    env |= {
        # The database in this test's folder instead of the checkout's db.sqlite3; the owner's
        # address so that a payment owes two emails.
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "SHOP_OWNER_EMAIL": "owner@example.com",
    }
    with open(log, "wb") as out:
        # -o: an installed .venv is taken as it is (a fresh `pip install` is `make install`'s).
        process = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"PORT={port}", "-o", ".venv/bin/.installed"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # honcho, runserver's reloader and the worker: one group
        )
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", timeout=90)
        yield f"http://127.0.0.1:{port}", log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_make_run_serves_the_demo_shop_and_its_worker_sends_the_emails(make_run):
    url, log = make_run
    browser = requests.Session()
    page = browser.get(url + "/")
    assert page.status_code == 200
    assert 'id="demo-banner"' in page.text  # no Stripe key: demo payments, and it says so

    names = re.findall(r'name="(quantity-\d+)"', page.text)
    assert len(names) == 3
    fields = {name: "0" for name in names} | {names[0]: "2", "csrfmiddlewaretoken": _token(page)}
    started = browser.post(
        url + "/checkout/", fields, headers={"Origin": url}, allow_redirects=False
    )
    assert started.status_code == 303
    checkout = browser.get(url + started.headers["Location"])
    assert "Demo — no real payment" in checkout.text

    paid = browser.post(
        checkout.url,
        {"csrfmiddlewaretoken": _token(checkout), "email": "jo@example.com", "action": "pay"},
        headers={"Origin": url},
    )
    assert 'data-status="paid"' in paid.text
    reference = re.search(r'data-order-id="(ord_\w+)"', browser.get(url + "/").text)
    assert reference is not None

    # The worker (console email backend under make run) sends both, once each.
    def sent() -> list[str]:
        return re.findall(rf"email \d+ \((\w+)\) for order {reference[1]} sent", log.read_text())

    wait_until(lambda: len(sent()) >= 2, timeout=60)
    time.sleep(1)  # a second send, were there one, would land by now
    assert sorted(sent()) == ["new_order", "order_confirmation"]
    assert "Traceback" not in log.read_text()


def _token(page: requests.Response) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert found is not None
    return found[1]
