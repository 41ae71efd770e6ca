"""The fake Stripe server, exercised through the real stripe SDK."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import stripe

from devtools.fakestripe import FakeStripe, load_fixtures

SUCCESS_URL = "https://shop.example/orders/42/thanks?session_id={CHECKOUT_SESSION_ID}"
CANCEL_URL = "https://shop.example/cart"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeStripe) -> FakeStripe:
    server.reset()
    return server


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK sleeps >= 0.5 s between retries; the retry decisions are what we test, not the wait.
    monkeypatch.setattr(stripe.HTTPClient, "INITIAL_DELAY", 0.01)


def make_client(fake: FakeStripe, **kwargs: Any) -> stripe.StripeClient:
    kwargs.setdefault("max_network_retries", 2)
    return stripe.StripeClient(fake.api_key, base_addresses={"api": fake.url}, **kwargs)


@pytest.fixture
def client(fake: FakeStripe) -> stripe.StripeClient:
    return make_client(fake)


def _line(name: str, unit_amount: int, quantity: int = 1) -> dict[str, Any]:
    price_data = {"currency": "usd", "unit_amount": unit_amount, "product_data": {"name": name}}
    return {"price_data": price_data, "quantity": quantity}


def session_params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [_line("Mug", 1200, quantity=2), _line("Sticker", 500)],
        "success_url": SUCCESS_URL,
        "cancel_url": CANCEL_URL,
        "client_reference_id": "order-42",
        "metadata": {"order_id": "42"},
    }
    params.update(overrides)
    return params


def create(client: stripe.StripeClient, key: str | None = None, **overrides: Any) -> Any:
    options: Any = {"idempotency_key": key} if key else {}
    return client.v1.checkout.sessions.create(params=session_params(**overrides), options=options)


# --- creating, reading and expiring sessions ---------------------------------------------------


def test_create_returns_fixture_shaped_session(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    session = create(client, key="order-42-attempt-1")

    assert session.id.startswith("cs_test_") and len(session.id) == len("cs_test_") + 24
    assert session.object == "checkout.session"
    assert (session.mode, session.status, session.payment_status) == ("payment", "open", "unpaid")
    assert session.amount_total == session.amount_subtotal == 2 * 1200 + 500
    assert session.currency == "usd"
    assert session.client_reference_id == "order-42"
    assert session.metadata.to_dict() == {"order_id": "42"}
    assert session.success_url == SUCCESS_URL
    assert session.url == f"{fake.url}/c/pay/{session.id}"
    assert session.payment_intent is None
    assert session.expires_at == pytest.approx(session.created + 24 * 3600, abs=2)
    assert set(load_fixtures()["checkout.session"]) <= set(session.to_dict())
    assert fake.sessions[session.id]["amount_total"] == 2900


def test_create_is_recorded_with_decoded_params_and_idempotency_key(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    create(client, key="order-42-attempt-1")

    [recorded] = fake.requests_to("POST", "/v1/checkout/sessions")
    assert recorded.idempotency_key == "order-42-attempt-1"
    assert recorded.headers["authorization"] == f"Bearer {fake.api_key}"
    assert recorded.headers["content-type"] == "application/x-www-form-urlencoded"
    assert recorded.params["line_items"][0]["price_data"]["unit_amount"] == "1200"
    assert recorded.params["line_items"][1]["price_data"]["product_data"] == {"name": "Sticker"}
    assert recorded.params["metadata"] == {"order_id": "42"}


def test_sdk_sends_its_own_idempotency_key_when_none_given(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    create(client)
    [recorded] = fake.requests
    assert recorded.idempotency_key


def test_same_key_replays_the_first_response(fake: FakeStripe, client: stripe.StripeClient) -> None:
    first = create(client, key="k1")
    again = create(client, key="k1")

    assert again.id == first.id
    assert len(fake.sessions) == 1
    assert again.last_response.headers["Idempotent-Replayed"] == "true"


def test_same_key_with_different_params_is_an_idempotency_error(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    create(client, key="k1")
    with pytest.raises(stripe.IdempotencyError, match="other than 'k1'"):
        create(client, key="k1", client_reference_id="order-43")
    assert len(fake.sessions) == 1


def test_concurrent_requests_with_one_key_create_one_session(fake: FakeStripe) -> None:
    body = "mode=payment&success_url=https://a.example/s&cancel_url=https://a.example/c&" + (
        "line_items[0][quantity]=1&line_items[0][price_data][currency]=usd&"
        "line_items[0][price_data][unit_amount]=100&line_items[0][price_data][product_data][name]=X"
    )
    headers = {
        "Authorization": f"Bearer {fake.api_key}",
        "Idempotency-Key": "race",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    ids: list[str] = []

    def post() -> None:
        response = requests.post(f"{fake.url}/v1/checkout/sessions", data=body, headers=headers)
        ids.append(response.json()["id"])

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(ids) == 8 and len(set(ids)) == 1
    assert len(fake.sessions) == 1


def test_retrieve_and_missing_session(client: stripe.StripeClient) -> None:
    created = create(client)
    assert client.v1.checkout.sessions.retrieve(created.id).id == created.id

    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.checkout.sessions.retrieve("cs_test_nope")
    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"
    assert "No such checkout.session: 'cs_test_nope'" in str(caught.value)


def test_expire_open_session(fake: FakeStripe, client: stripe.StripeClient) -> None:
    created = create(client)
    expired = client.v1.checkout.sessions.expire(created.id)
    assert expired.status == "expired"
    assert fake.sessions[created.id]["status"] == "expired"


def test_expire_completed_session_is_rejected(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    created = create(client)
    fake.complete(created.id)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.checkout.sessions.expire(created.id)
    assert caught.value.user_message == (
        'Only Checkout Sessions with a status in ["open"] can be expired. '
        "This Checkout Session has a status of `complete`."
    )
    with pytest.raises(ValueError):
        fake.expire(created.id)


def test_complete_sets_stable_payment_intent(fake: FakeStripe, client: stripe.StripeClient) -> None:
    created = create(client)
    completed = fake.complete(created.id)
    assert (completed["status"], completed["payment_status"]) == ("complete", "paid")
    assert completed["payment_intent"].startswith("pi_")
    assert (
        client.v1.checkout.sessions.retrieve(created.id).payment_intent
        == (completed["payment_intent"])
    )
    completed["status"] = "mutated copy"
    assert fake.sessions[created.id]["status"] == "complete"


# --- validation --------------------------------------------------------------------------------


def _set_line(index: int, **price_data: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(params: dict[str, Any]) -> None:
        params["line_items"][index]["price_data"].update(price_data)

    return mutate


INVALID_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("unknown", lambda p: p.update(colour="red"), "colour"),
    ("nested unknown", lambda p: p["line_items"][0].update(size="L"), "line_items[0][size]"),
    ("mode", lambda p: p.update(mode="subscription"), "mode"),
    ("quantity", lambda p: p["line_items"][0].update(quantity=0), "line_items[0][quantity]"),
    ("amount", _set_line(1, unit_amount=-1), "line_items[1][price_data][unit_amount]"),
    ("currency", _set_line(0, currency="USD"), "line_items[0][price_data][currency]"),
    ("mixed", _set_line(1, currency="eur"), "line_items"),
    (
        "name",
        _set_line(0, product_data={"name": ""}),
        "line_items[0][price_data][product_data][name]",
    ),
    ("no lines", lambda p: p.pop("line_items"), "line_items"),
    ("too many", lambda p: p.update(line_items=p["line_items"] * 51), "line_items"),
    ("relative url", lambda p: p.update(success_url="/thanks"), "success_url"),
    ("no cancel", lambda p: p.pop("cancel_url"), "cancel_url"),
    ("soon", lambda p: p.update(expires_at=int(time.time()) + 600), "expires_at"),
    ("late", lambda p: p.update(expires_at=int(time.time()) + 25 * 3600), "expires_at"),
    ("too large", _set_line(0, unit_amount=50_000_000), "line_items"),
    ("too small", lambda p: p.update(line_items=[_line("Pin", 49)]), "line_items"),
]


@pytest.mark.parametrize(
    ("mutate", "param"), [case[1:] for case in INVALID_CASES], ids=[c[0] for c in INVALID_CASES]
)
def test_invalid_params_are_rejected_like_stripe(
    fake: FakeStripe,
    client: stripe.StripeClient,
    mutate: Callable[[dict[str, Any]], None],
    param: str,
) -> None:
    params = json.loads(json.dumps(session_params()))
    mutate(params)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.checkout.sessions.create(params=params)
    assert caught.value.http_status == 400
    assert caught.value.param == param
    assert fake.sessions == {}


def test_unknown_parameter_message(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError, match="Received unknown parameter: colour"):
        create(client, colour="red")


def test_valid_expires_at_and_optional_fields_are_kept(client: stripe.StripeClient) -> None:
    expires_at = int(time.time()) + 3600
    session = create(client, expires_at=expires_at, customer_email="a@b.example", locale="en")
    assert (session.expires_at, session.customer_email, session.locale) == (
        expires_at,
        "a@b.example",
        "en",
    )


def test_validation_failures_are_not_stored_under_the_key(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        create(client, key="fix-and-retry", colour="red")
    assert create(client, key="fix-and-retry").status == "open"


def test_wrong_api_key_is_an_authentication_error(fake: FakeStripe) -> None:
    wrong = stripe.StripeClient("sk_test_wrong", base_addresses={"api": fake.url})
    with pytest.raises(stripe.AuthenticationError):
        create(wrong)
    assert fake.sessions == {}


def test_unknown_path_is_a_stripe_shaped_404(fake: FakeStripe) -> None:
    response = requests.get(
        f"{fake.url}/v1/customers", headers={"Authorization": f"Bearer {fake.api_key}"}
    )
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.headers["Request-Id"].startswith("req_")


# --- faults and the SDK's retries --------------------------------------------------------------


def test_one_failure_is_retried_with_the_same_key(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    fake.fail_next()
    session = create(client, key="retry-me")

    assert list(fake.sessions) == [session.id]
    attempts = fake.requests_to("POST", "/v1/checkout/sessions")
    assert [a.idempotency_key for a in attempts] == ["retry-me", "retry-me"]


def test_persistent_failure_surfaces_as_api_error(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    fake.fail_next(3)
    with pytest.raises(stripe.APIError):
        create(client)
    assert len(fake.requests) == 3
    assert fake.sessions == {}


def test_should_retry_false_stops_the_sdk(fake: FakeStripe, client: stripe.StripeClient) -> None:
    fake.fail_next(status=503, should_retry=False)
    with pytest.raises(stripe.APIError):
        create(client)
    assert len(fake.requests) == 1


def test_rate_limit_is_a_rate_limit_error(fake: FakeStripe, client: stripe.StripeClient) -> None:
    fake.fail_next(status=429)
    with pytest.raises(stripe.RateLimitError):
        create(client)


def test_dropped_connection_is_retried(fake: FakeStripe, client: stripe.StripeClient) -> None:
    fake.drop_next()
    session = create(client, key="dropped")
    assert list(fake.sessions) == [session.id]
    assert len(fake.requests_to("POST", "/v1/checkout/sessions")) == 2


def test_hang_times_out_as_connection_error(fake: FakeStripe) -> None:
    impatient = make_client(
        fake, max_network_retries=0, http_client=stripe.RequestsClient(timeout=1)
    )
    fake.hang_next(seconds=30)
    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError):
        create(impatient)
    assert time.monotonic() - started < 5
    assert fake.sessions == {}


def test_reset_releases_a_hanging_request_promptly(fake: FakeStripe) -> None:
    fake.hang_next(seconds=30)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            requests.get(f"{fake.url}/v1/checkout/sessions/x", timeout=20)
        except requests.ConnectionError as error:
            outcome.append(error)

    thread = threading.Thread(target=call)
    thread.start()
    while not fake.requests:
        time.sleep(0.01)
    started = time.monotonic()
    fake.reset()
    thread.join(timeout=5)
    assert time.monotonic() - started < 2
    assert len(outcome) == 1


def test_faults_only_hit_matching_paths(fake: FakeStripe, client: stripe.StripeClient) -> None:
    created = create(client)
    fake.fail_next(prefix="/v1/checkout/sessions/cs_")
    fake.fail_next(prefix="/v1/checkout/sessions/cs_")
    assert create(client).status == "open"  # POST /v1/checkout/sessions does not match
    assert client.v1.checkout.sessions.retrieve(created.id).id == created.id  # retried past both
    assert len(fake.requests_to("GET", "/v1/checkout/sessions/")) == 3


# --- events and webhooks -----------------------------------------------------------------------


def test_sign_verifies_with_the_sdk(fake: FakeStripe) -> None:
    payload = json.dumps(fake.event("ping", {"id": "x"})).encode()
    header = fake.sign(payload)
    stripe.WebhookSignature.verify_header(payload, header, fake.webhook_secret, 300)

    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload, header, "whsec_other", 300)
    stale = fake.sign(payload, timestamp=int(time.time()) - 3600)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload, stale, fake.webhook_secret, 300)


def test_session_event_is_fixture_shaped(fake: FakeStripe, client: stripe.StripeClient) -> None:
    created = create(client)
    event = fake.session_event("checkout.session.expired", created.id, event_id="evt_1", created=7)
    assert set(load_fixtures()["event"]) <= set(event)
    assert (event["id"], event["object"], event["type"], event["created"]) == (
        "evt_1",
        "event",
        "checkout.session.expired",
        7,
    )
    assert event["livemode"] is False
    assert event["request"] == {"id": None, "idempotency_key": None}
    assert event["data"]["object"]["id"] == created.id


def test_charge_refunded_event(fake: FakeStripe, client: stripe.StripeClient) -> None:
    created = create(client)
    with pytest.raises(ValueError):
        fake.charge_refunded(created.id)
    payment_intent = fake.complete(created.id)["payment_intent"]

    partial = fake.charge_refunded(created.id, amount_refunded=900)["data"]["object"]
    full = fake.charge_refunded(created.id)["data"]["object"]

    assert set(load_fixtures()["charge"]) <= set(full)
    assert full["id"].startswith("ch_") and partial["id"] == full["id"]
    assert (full["amount"], full["amount_refunded"], full["refunded"]) == (2900, 2900, True)
    assert (partial["amount_refunded"], partial["refunded"]) == (900, False)
    assert full["payment_intent"] == payment_intent
    assert full["paid"] is True and full["captured"] is True
    # The fake keeps the refunds: the first event's refund and the one that made up the rest.
    assert [r["amount"] for r in full["refunds"]["data"]] == [900, 2000]
    assert len(fake.refunds) == 2


def test_refunds_through_the_sdk_are_kept_listed_and_replayed(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    created = create(client)
    payment_intent = fake.complete(created.id)["payment_intent"]

    first = client.v1.refunds.create(
        params={
            "payment_intent": payment_intent,
            "amount": 1000,
            "reason": "duplicate",
            "metadata": {"order": "ord_1"},
        },
        options={"idempotency_key": "refund-1"},
    )
    again = client.v1.refunds.create(
        params={
            "payment_intent": payment_intent,
            "amount": 1000,
            "reason": "duplicate",
            "metadata": {"order": "ord_1"},
        },
        options={"idempotency_key": "refund-1"},
    )
    rest = client.v1.refunds.create(params={"payment_intent": payment_intent})

    assert again.id == first.id and first.status == "succeeded"
    assert (first.amount, rest.amount) == (1000, 1900)
    assert first.metadata["order"] == "ord_1" and first.reason == "duplicate"
    listed = client.v1.refunds.list(params={"payment_intent": payment_intent, "limit": 1})
    assert [r.id for r in listed.data] == [rest.id] and listed.has_more
    following = client.v1.refunds.list(params={"limit": 10, "starting_after": rest.id})
    assert [r.id for r in following.data] == [first.id]
    assert client.v1.refunds.retrieve(first.id).amount == 1000
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.refunds.create(params={"payment_intent": payment_intent, "amount": 1})
    assert refused.value.code == "charge_already_refunded"


def test_refund_of_more_than_remains_or_of_an_unpaid_session_is_refused(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    created = create(client)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.refunds.create(params={"payment_intent": "pi_unknown"})
    payment_intent = fake.complete(created.id)["payment_intent"]
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.refunds.create(params={"payment_intent": payment_intent, "amount": 2901})
    assert refused.value.param == "amount"
    assert fake.refunds == {}


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[bytes, dict[str, str]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((body, dict(self.headers.items())))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[bytes, dict[str, str]]]]]:
    received: list[tuple[bytes, dict[str, str]]] = []
    handler = type("Handler", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/webhooks/stripe/", received
    server.shutdown()
    server.server_close()
    thread.join()


def test_hosted_page_pays_and_delivers_a_signed_webhook(
    fake: FakeStripe,
    client: stripe.StripeClient,
    receiver: tuple[str, list[tuple[bytes, dict[str, str]]]],
) -> None:
    webhook_url, received = receiver
    fake.webhook_url = webhook_url
    session = create(client)

    page = requests.get(session.url)
    assert page.status_code == 200
    assert "<title>Fake Stripe Checkout</title>" in page.text
    assert "Mug" in page.text and "$29.00" in page.text
    assert 'id="pay"' in page.text and 'id="cancel"' in page.text
    assert CANCEL_URL in page.text

    paid = requests.post(session.url, allow_redirects=False)
    assert paid.status_code == 303
    assert paid.headers["Location"] == SUCCESS_URL.replace("{CHECKOUT_SESSION_ID}", session.id)
    assert fake.sessions[session.id]["status"] == "complete"
    assert fake.delivery_errors == []

    [(body, headers)] = received
    stripe.WebhookSignature.verify_header(
        body, headers["Stripe-Signature"], fake.webhook_secret, 300
    )
    event = json.loads(body)
    assert event["type"] == "checkout.session.completed"
    assert event["data"]["object"]["id"] == session.id
    assert event["data"]["object"]["payment_status"] == "paid"
    assert headers["Content-Type"].startswith("application/json")

    after = requests.get(session.url).text
    assert 'id="pay"' not in after and "complete" in after
    assert requests.post(session.url, allow_redirects=False).status_code == 409


def test_hosted_page_records_failed_delivery(fake: FakeStripe, client: stripe.StripeClient) -> None:
    fake.webhook_url = "http://127.0.0.1:9/unreachable"
    session = create(client)
    paid = requests.post(session.url, allow_redirects=False)
    assert paid.status_code == 303
    assert len(fake.delivery_errors) == 1


def test_hosted_page_without_webhook_url_and_unknown_session(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    session = create(client)
    assert requests.post(session.url, allow_redirects=False).status_code == 303
    assert requests.get(f"{fake.url}/c/pay/cs_test_nope").status_code == 404
    assert fake.requests_to("GET", "/c/") == []


def test_reset_forgets_everything(fake: FakeStripe, client: stripe.StripeClient) -> None:
    create(client, key="k")
    fake.webhook_url = "http://127.0.0.1:9/"
    fake.fail_next(5)
    fake.reset()
    assert (fake.sessions, fake.requests, fake.webhook_url) == ({}, [], None)
    assert create(client, key="k", client_reference_id="other").status == "open"
