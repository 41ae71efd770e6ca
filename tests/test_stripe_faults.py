"""What the customer sees and what is stored when Stripe misbehaves."""

import time

import pytest

from shop.orders.models import Order, OrderStatus
from tests.conftest import buy, last_order

pytestmark = pytest.mark.django_db


def creates(fake):
    return fake.requests_to("POST", "/v1/checkout/sessions")


def test_500_once_then_success_makes_one_session_with_one_idempotency_key(
    client, products, fake_stripe
):
    fake_stripe.fail_next(1, status=500)

    response = buy(client, products, 1, 0, 0)

    assert response.status_code == 303
    assert len(fake_stripe.sessions) == 1
    keys = {r.idempotency_key for r in creates(fake_stripe)}
    assert len(creates(fake_stripe)) == 2 and keys == {f"checkout-session-{last_order().reference}"}


@pytest.mark.parametrize("fault", ["500", "503", "429"])
def test_stripe_down_answers_503_says_no_money_taken_and_closes_the_order(
    client, products, fake_stripe, fault
):
    fake_stripe.fail_next(10, status=int(fault))

    response = buy(client, products, 1, 0, 0)

    body = response.content.decode()
    assert response.status_code == 503
    assert "no money was taken" in body
    assert "Traceback" not in body and fake_stripe.api_key not in body
    order = last_order()
    assert order.status == OrderStatus.FAILED
    assert order.checkout_url == ""
    assert len({r.idempotency_key for r in creates(fake_stripe)}) == 1


def test_session_created_but_its_answer_lost_is_retried_into_the_same_session(
    client, products, fake_stripe
):
    # Stripe creates the session, then the connection drops before the answer arrives: the
    # idempotency key is what keeps the SDK's retry from creating a second session.
    fake_stripe.lose_answer_next(1, prefix="/v1/checkout/sessions")

    response = buy(client, products, 1, 0, 0)

    assert response.status_code == 303
    assert len(creates(fake_stripe)) == 2
    assert len(fake_stripe.sessions) == 1
    (session_id,) = fake_stripe.sessions
    assert last_order().checkout_session_id == session_id
    assert response["Location"] == fake_stripe.sessions[session_id]["url"]


def test_429_once_is_retried_with_the_same_key(client, products, fake_stripe):
    fake_stripe.fail_next(1, status=429)

    response = buy(client, products, 1, 0, 0)

    assert response.status_code == 303
    assert len(creates(fake_stripe)) == 2
    assert len({r.idempotency_key for r in creates(fake_stripe)}) == 1


def test_dropped_connection_is_retried(client, products, fake_stripe):
    fake_stripe.drop_next(1)

    response = buy(client, products, 1, 0, 0)

    assert response.status_code == 303
    assert len(fake_stripe.sessions) == 1


def test_hanging_stripe_is_cut_off_within_bounded_time(client, products, fake_stripe, settings):
    settings.STRIPE_TIMEOUT_SECONDS = 0.5
    fake_stripe.hang_next(10, seconds=30)

    started = time.monotonic()
    response = buy(client, products, 1, 0, 0)
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    # Three tries of 0.5 s plus back-off: nowhere near the 30 s the server would hang.
    assert elapsed < 10
    assert last_order().status == OrderStatus.FAILED


def test_retry_after_outage_starts_a_fresh_checkout(client, products, fake_stripe):
    fake_stripe.fail_next(3, status=500)  # one try and the SDK's two retries
    buy(client, products, 1, 0, 0)
    failed = last_order()

    response = buy(client, products, 1, 0, 0)

    assert response.status_code == 303
    assert last_order().pk != failed.pk
    assert Order.objects.filter(status=OrderStatus.PENDING).count() == 1


def test_failure_to_expire_previous_session_refuses_a_second_one(client, products, fake_stripe):
    buy(client, products, 1, 0, 0)
    first = last_order()
    # One try and the SDK's two retries all fail.
    fake_stripe.fail_next(
        3, status=500, prefix=f"/v1/checkout/sessions/{first.checkout_session_id}"
    )

    response = buy(client, products, 2, 0, 0)

    assert response.status_code == 503
    assert fake_stripe.sessions[first.checkout_session_id]["status"] == "open"
    assert len(fake_stripe.sessions) == 1  # no second payable session

    response = buy(client, products, 2, 0, 0)  # Stripe is back

    assert response.status_code == 303
    assert fake_stripe.sessions[first.checkout_session_id]["status"] == "expired"
    first.refresh_from_db()
    assert first.status == OrderStatus.EXPIRED
    assert [s["status"] for s in fake_stripe.sessions.values()] == ["expired", "open"]


def test_expiry_refused_for_a_session_stripe_still_calls_open_refuses_a_second_one(
    client, products, fake_stripe
):
    buy(client, products, 1, 0, 0)
    first = last_order()
    fake_stripe.fail_next(
        1,
        status=400,
        error_type="invalid_request_error",
        prefix=f"/v1/checkout/sessions/{first.checkout_session_id}/expire",
    )

    response = buy(client, products, 2, 0, 0)

    assert response.status_code == 503
    assert len(fake_stripe.sessions) == 1
    assert fake_stripe.sessions[first.checkout_session_id]["status"] == "open"
    first.refresh_from_db()
    assert first.status == OrderStatus.PENDING


def test_expiry_refused_because_the_customer_just_paid_keeps_the_payment(
    client, products, fake_stripe
):
    buy(client, products, 1, 0, 0)
    first = last_order()
    fake_stripe.complete(first.checkout_session_id)  # paid, its webhook not here yet

    assert buy(client, products, 2, 0, 0).status_code == 303

    first.refresh_from_db()
    assert first.status == OrderStatus.PAID


@pytest.fixture
def fresh_stripe_clients(monkeypatch):
    """The gateway's clients are made again (they read the environment's proxy when made)."""
    import threading

    from shop.payments import stripe_gateway

    monkeypatch.setattr(stripe_gateway, "_local", threading.local())
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return lambda: monkeypatch.setattr(stripe_gateway, "_local", threading.local())


def test_stripe_calls_go_through_the_proxy_the_environment_names(
    client, products, fake_stripe, monkeypatch, fresh_stripe_clients
):
    # A proxy that refuses every connection: a call through it fails; one exempted by
    # NO_PROXY reaches Stripe.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")

    assert buy(client, products, 1, 0, 0).status_code == 503
    assert creates(fake_stripe) == []

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    fresh_stripe_clients()
    assert buy(client, products, 0, 1, 0).status_code == 303
    assert len(creates(fake_stripe)) == 1
