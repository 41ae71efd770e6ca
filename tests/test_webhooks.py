import json
import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from shop.orders.models import Order, OrderStatus, OrderTransition
from shop.payments import webhooks
from shop.payments.models import WebhookDelivery, WebhookEvent
from tests.conftest import WEBHOOK_URL, buy, last_order, pay, post_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def order(client, products, fake_stripe):
    buy(client, products, 1, 2, 0)
    return last_order()


def completed_event(fake, order, **kw):
    fake.complete(order.checkout_session_id, **kw)
    return fake.session_event("checkout.session.completed", order.checkout_session_id)


def test_completed_event_marks_order_paid(client, fake_stripe, order):
    response = pay(client, fake_stripe, order)

    order.refresh_from_db()
    assert response.status_code == 200
    assert order.status == OrderStatus.PAID
    assert order.paid_at is not None
    assert (
        order.payment_intent_id == fake_stripe.sessions[order.checkout_session_id]["payment_intent"]
    )
    (transition,) = OrderTransition.objects.filter(order=order)
    assert (transition.from_status, transition.to_status) == ("pending", "paid")
    assert transition.cause == "checkout.session.completed"


def test_paid_order_keeps_the_address_stripe_collected(client, fake_stripe, order):
    fake_stripe.complete(order.checkout_session_id)
    fake_stripe.set_session_fields(
        order.checkout_session_id,
        customer_details={"email": " Jenny.Rosen@Example.COM ", "name": "Jenny Rosen"},
    )
    event = fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)

    assert post_event(client, fake_stripe, event).status_code == 200

    order.refresh_from_db()
    assert (order.status, order.email) == (OrderStatus.PAID, "jenny.rosen@example.com")


def test_same_event_five_times_marks_order_paid_once(client, fake_stripe, order):
    event = completed_event(fake_stripe, order)

    responses = [post_event(client, fake_stripe, event) for _ in range(5)]

    assert [r.status_code for r in responses] == [200] * 5
    assert OrderTransition.objects.filter(order=order, to_status="paid").count() == 1
    assert WebhookEvent.objects.filter(event_id=event["id"]).count() == 1
    assert WebhookDelivery.objects.filter(event_id=event["id"]).count() == 5
    assert [json.loads(r.content)["result"] for r in responses[1:]] == ["duplicate: paid"] * 4


def test_distinct_events_for_one_session_mark_order_paid_once(client, fake_stripe, order):
    fake_stripe.complete(order.checkout_session_id)
    for _ in range(4):
        event = fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)
        assert post_event(client, fake_stripe, event).status_code == 200

    assert OrderTransition.objects.filter(order=order, to_status="paid").count() == 1
    assert WebhookEvent.objects.count() == 4


def test_completed_but_unpaid_leaves_order_pending(client, fake_stripe, order):
    event = completed_event(fake_stripe, order, payment_status="unpaid")

    assert post_event(client, fake_stripe, event).status_code == 200

    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda fake, body: None, id="missing"),
        pytest.param(lambda fake, body: "", id="empty"),
        pytest.param(lambda fake, body: "garbage", id="garbage"),
        pytest.param(lambda fake, body: fake.sign(body, secret="whsec_wrong"), id="wrong-secret"),
        pytest.param(lambda fake, body: fake.sign(body + b" "), id="other-body"),
        pytest.param(
            lambda fake, body: fake.sign(body, timestamp=int(time.time()) - 301), id="stale"
        ),
        pytest.param(lambda fake, body: fake.sign(body).replace("v1=", "v0="), id="wrong-scheme"),
        pytest.param(lambda fake, body: "t=notanumber,v1=abc", id="bad-timestamp"),
    ],
)
def test_bad_signature_is_rejected_and_changes_nothing(client, fake_stripe, order, mangle):
    event = completed_event(fake_stripe, order)
    body = json.dumps(event).encode()
    signature = mangle(fake_stripe, body)
    headers = {} if signature is None else {"HTTP_STRIPE_SIGNATURE": signature}

    response = client.post(WEBHOOK_URL, data=body, content_type="application/json", **headers)

    order.refresh_from_db()
    assert response.status_code == 400
    assert order.status == OrderStatus.PENDING
    assert WebhookEvent.objects.count() == 0
    delivery = WebhookDelivery.objects.get()
    assert delivery.signature_valid is False
    assert delivery.processed is False


@pytest.mark.parametrize("signed_with", ["whsec_new_secret", "whsec_old_secret"])
def test_while_rolling_a_secret_both_the_new_and_the_old_one_are_accepted(
    client, fake_stripe, order, settings, signed_with
):
    settings.STRIPE_WEBHOOK_SECRETS = ["whsec_new_secret", "whsec_old_secret"]
    event = completed_event(fake_stripe, order)

    assert post_event(client, fake_stripe, event, secret=signed_with).status_code == 200
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID


def test_the_webhook_secret_variable_takes_two_comma_separated_secrets():
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.STRIPE_WEBHOOK_SECRETS)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "STRIPE_", "SHOP_"))}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={
            **env,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_DEBUG": "true",
            "STRIPE_WEBHOOK_SECRET": " whsec_new , whsec_old ",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "['whsec_new', 'whsec_old']"


def test_signed_but_malformed_json_is_rejected(client, fake_stripe):
    for body in [b"{not json", b"[]", b'{"id": "evt_1"}', "\xff".encode("latin-1")]:
        response = client.post(
            WEBHOOK_URL,
            data=body,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=fake_stripe.sign(body) if body != b"\xff" else "t=1,v1=0",
        )
        assert response.status_code == 400
    assert WebhookEvent.objects.count() == 0


def test_webhook_without_configured_secret_rejects_everything(client, fake_stripe, order, settings):
    settings.STRIPE_WEBHOOK_SECRETS = []
    response = post_event(client, fake_stripe, completed_event(fake_stripe, order))

    assert response.status_code == 400
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING


def test_unknown_event_type_is_acknowledged_and_changes_nothing(client, fake_stripe, order):
    event = fake_stripe.event("customer.created", {"id": "cus_1", "object": "customer"})

    response = post_event(client, fake_stripe, event)

    assert response.status_code == 200
    assert "ignored" in json.loads(response.content)["result"]
    assert Order.objects.get().status == OrderStatus.PENDING


def test_session_that_is_not_ours_is_acknowledged_and_changes_nothing(client, fake_stripe, order):
    foreign = dict(fake_stripe.sessions[order.checkout_session_id])
    foreign.update(
        id="cs_test_foreign",
        client_reference_id="ord_someone_else",
        metadata={"order_id": "ord_someone_else"},
        status="complete",
        payment_status="paid",
    )
    response = post_event(
        client, fake_stripe, fake_stripe.event("checkout.session.completed", foreign)
    )

    assert response.status_code == 200
    assert Order.objects.get().status == OrderStatus.PENDING


def test_session_without_any_order_reference_is_ignored(client, fake_stripe, order):
    foreign = dict(fake_stripe.sessions[order.checkout_session_id])
    foreign.update(client_reference_id=None, metadata={}, status="complete", payment_status="paid")
    response = post_event(
        client, fake_stripe, fake_stripe.event("checkout.session.completed", foreign)
    )

    assert response.status_code == 200
    assert Order.objects.get().status == OrderStatus.PENDING


def test_webhook_refuses_get_and_non_json(client, fake_stripe):
    assert client.get(WEBHOOK_URL).status_code == 405
    body = b"id=evt_1"
    response = client.post(
        WEBHOOK_URL,
        data=body,
        content_type="application/x-www-form-urlencoded",
        HTTP_STRIPE_SIGNATURE=fake_stripe.sign(body),
    )
    assert response.status_code == 415


def test_webhook_is_csrf_exempt(fake_stripe, order):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    assert pay(strict, fake_stripe, order).status_code == 200


def test_delivery_is_logged_with_raw_body_and_outcome(client, fake_stripe, order):
    event = completed_event(fake_stripe, order)
    body = json.dumps(event).encode()
    client.post(
        WEBHOOK_URL,
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=fake_stripe.sign(body),
        HTTP_USER_AGENT="Stripe/1.0",
    )

    delivery = WebhookDelivery.objects.get()
    assert delivery.body == body.decode()
    assert delivery.signature_valid and delivery.processed
    assert delivery.outcome == "paid"
    assert delivery.headers["User-Agent"] == "Stripe/1.0"
    assert "Stripe-Signature" in delivery.headers


def test_non_ascii_signature_header_is_a_400(client, fake_stripe, order):
    body = json.dumps(completed_event(fake_stripe, order)).encode()
    response = client.post(
        WEBHOOK_URL, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE="t=0,v1=\x80"
    )
    assert response.status_code == 400


def test_nul_characters_are_refused_and_the_forged_delivery_still_logged(
    client, fake_stripe, order
):
    body = json.dumps(completed_event(fake_stripe, order)).encode() + b"\x00"
    unsigned = client.post(WEBHOOK_URL, data=body, content_type="application/json")
    signed = client.post(
        WEBHOOK_URL,
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=fake_stripe.sign(body),
    )

    assert (unsigned.status_code, signed.status_code) == (400, 400)
    assert WebhookDelivery.objects.count() == 2
    assert Order.objects.get().status == OrderStatus.PENDING


def test_deeply_nested_signed_body_is_a_400(client, fake_stripe):
    body = b'{"id": "evt_1", "type": "x", "data": {"object": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    response = client.post(
        WEBHOOK_URL,
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=fake_stripe.sign(body),
    )
    assert response.status_code == 400


@pytest.mark.parametrize("metadata", [["ord_x"], True, "ord_x"])
def test_signed_session_with_malformed_metadata_is_acknowledged(
    client, fake_stripe, order, metadata
):
    session = dict(
        fake_stripe.sessions[order.checkout_session_id],
        metadata=metadata,
        client_reference_id=None,
        status="complete",
        payment_status="paid",
    )
    response = post_event(
        client, fake_stripe, fake_stripe.event("checkout.session.completed", session)
    )

    assert response.status_code == 200
    assert Order.objects.get().status == OrderStatus.PENDING


def test_overlong_payment_intent_id_does_not_break_fulfilment(client, fake_stripe, order):
    fake_stripe.complete(order.checkout_session_id)
    session = dict(
        fake_stripe.sessions[order.checkout_session_id], payment_intent="pi_" + "x" * 300
    )
    response = post_event(
        client, fake_stripe, fake_stripe.event("checkout.session.completed", session)
    )

    order.refresh_from_db()
    assert response.status_code == 200
    assert order.status == OrderStatus.PAID
    assert order.payment_intent_id == ""


def test_repeated_delivery_is_logged_whole_with_its_duplicate_outcome(client, fake_stripe, order):
    event = completed_event(fake_stripe, order)
    post_event(client, fake_stripe, event)

    response = post_event(client, fake_stripe, event)

    assert json.loads(response.content)["result"] == "duplicate: paid"
    first, again = WebhookDelivery.objects.order_by("id")
    assert again.body == first.body
    assert again.signature_valid and again.processed
    assert again.outcome == "duplicate: paid"
    assert again.event_id == event["id"]
    assert WebhookEvent.objects.get().attempts == 1


def test_a_flood_of_refused_deliveries_keeps_the_log_small_and_bounded(client, fake_stripe):
    big = b'{"id": "evt_x", "pad": "' + b"x" * (256 * 1024 - 40) + b'"}'

    statuses = {
        client.post(
            WEBHOOK_URL, data=big, content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=0"
        ).status_code
        for _ in range(100)
    }

    assert statuses == {400}
    kept = WebhookDelivery.objects.all()
    assert kept.count() == webhooks.REFUSED_KEPT_PER_ADDRESS_PER_HOUR
    assert all(len(d.body) <= 200 and d.body_size == len(big) for d in kept)
    assert {d.kind for d in kept} == {"refused"}
    assert "signature" in kept.first().outcome


def test_refusals_from_many_addresses_stop_being_recorded_past_the_overall_limit(
    client, fake_stripe, monkeypatch
):
    monkeypatch.setattr(webhooks, "REFUSED_KEPT_PER_HOUR", 25)
    for i in range(60):
        response = client.post(
            WEBHOOK_URL,
            data=b"{}",
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE="t=1,v1=0",
            REMOTE_ADDR=f"203.0.113.{i}",
        )
        assert response.status_code == 400
    assert WebhookDelivery.objects.count() == 25


def test_refused_deliveries_are_pruned_on_a_short_clock(client, fake_stripe, order):
    pay(client, fake_stripe, order)
    client.post(WEBHOOK_URL, data=b"{}", content_type="application/json")
    WebhookDelivery.objects.update(received_at=timezone.now() - timedelta(hours=25))

    call_command("prune_webhook_deliveries")

    (kept,) = WebhookDelivery.objects.all()
    assert kept.kind == "applied"
