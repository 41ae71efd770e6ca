"""Late, duplicated and out-of-order events: paid never goes back, money is never dropped."""

import json
import logging
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from shop.orders.models import Order, OrderStatus, OrderTransition
from shop.payments import webhooks
from shop.payments.models import WebhookDelivery, WebhookEvent
from tests.conftest import buy, last_order, pay, post_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def order(client, products, fake_stripe):
    buy(client, products, 1, 0, 0)
    return last_order()


def send(client, fake, type, order):
    return post_event(client, fake, fake.session_event(type, order.checkout_session_id))


def status(order):
    order.refresh_from_db()
    return order.status


def test_async_payment_succeeded_after_unpaid_completion_marks_paid(client, fake_stripe, order):
    fake_stripe.complete(order.checkout_session_id, payment_status="unpaid")
    send(client, fake_stripe, "checkout.session.completed", order)
    assert status(order) == OrderStatus.PENDING

    fake_stripe.set_session_fields(order.checkout_session_id, payment_status="paid")
    send(client, fake_stripe, "checkout.session.async_payment_succeeded", order)

    assert status(order) == OrderStatus.PAID


def test_async_payment_failed_marks_failed(client, fake_stripe, order):
    fake_stripe.complete(order.checkout_session_id, payment_status="unpaid")
    send(client, fake_stripe, "checkout.session.async_payment_failed", order)

    assert status(order) == OrderStatus.FAILED


def test_async_failed_after_succeeded_keeps_paid(client, fake_stripe, order):
    fake_stripe.complete(order.checkout_session_id, payment_status="unpaid")
    fake_stripe.set_session_fields(order.checkout_session_id, payment_status="paid")
    send(client, fake_stripe, "checkout.session.async_payment_succeeded", order)
    fake_stripe.set_session_fields(order.checkout_session_id, payment_status="unpaid")

    response = send(client, fake_stripe, "checkout.session.async_payment_failed", order)

    assert response.status_code == 200
    assert status(order) == OrderStatus.PAID


def test_expired_event_marks_pending_order_expired(client, fake_stripe, order):
    fake_stripe.expire(order.checkout_session_id)
    send(client, fake_stripe, "checkout.session.expired", order)

    assert status(order) == OrderStatus.EXPIRED


def test_expired_after_paid_keeps_paid(client, fake_stripe, order):
    pay(client, fake_stripe, order)
    expired = dict(
        fake_stripe.sessions[order.checkout_session_id], status="expired", payment_status="unpaid"
    )

    response = post_event(
        client, fake_stripe, fake_stripe.event("checkout.session.expired", expired)
    )

    assert response.status_code == 200
    assert status(order) == OrderStatus.PAID


def test_payment_after_expiry_is_taken_not_lost(client, fake_stripe, order, caplog):
    # Its products have unlimited stock, so the stock can always be taken again (a product with
    # limited stock: tests/test_stock.py).
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.EXPIRED)
    fake_stripe.complete(order.checkout_session_id)

    with caplog.at_level(logging.WARNING, logger="shop"):
        response = send(client, fake_stripe, "checkout.session.completed", order)

    order.refresh_from_db()
    assert response.status_code == 200
    assert order.status == OrderStatus.PAID and order.paid_at
    assert not order.needs_review
    transition = order.transitions.get()
    assert (transition.from_status, transition.to_status) == ("expired", "paid")
    assert any(
        order.reference in r.getMessage() and r.levelname == "WARNING" for r in caplog.records
    )


def test_full_refund_marks_paid_order_refunded(client, fake_stripe, order):
    pay(client, fake_stripe, order)

    response = post_event(
        client, fake_stripe, fake_stripe.charge_refunded(order.checkout_session_id)
    )

    assert response.status_code == 200
    assert status(order) == OrderStatus.REFUNDED
    causes = list(OrderTransition.objects.filter(order=order).values_list("to_status", flat=True))
    assert causes == ["paid", "refunded"]


def test_duplicate_refund_changes_nothing_more(client, fake_stripe, order):
    pay(client, fake_stripe, order)
    event = fake_stripe.charge_refunded(order.checkout_session_id)
    post_event(client, fake_stripe, event)
    post_event(client, fake_stripe, event)
    post_event(client, fake_stripe, fake_stripe.charge_refunded(order.checkout_session_id))

    assert status(order) == OrderStatus.REFUNDED
    assert OrderTransition.objects.filter(order=order, to_status="refunded").count() == 1


def test_partial_refund_keeps_order_paid(client, fake_stripe, order):
    pay(client, fake_stripe, order)

    post_event(
        client,
        fake_stripe,
        fake_stripe.charge_refunded(order.checkout_session_id, amount_refunded=100),
    )

    assert status(order) == OrderStatus.PAID


def test_refund_of_pending_order_changes_nothing(client, fake_stripe, order):
    fake_stripe.complete(order.checkout_session_id)  # paid at Stripe, but no event here yet
    response = post_event(
        client, fake_stripe, fake_stripe.charge_refunded(order.checkout_session_id)
    )

    assert response.status_code == 200
    assert status(order) == OrderStatus.PENDING


def test_refund_that_arrives_before_the_payment_is_applied_once_paid(client, fake_stripe, order):
    fake_stripe.complete(order.checkout_session_id)
    refund = fake_stripe.charge_refunded(order.checkout_session_id)
    post_event(client, fake_stripe, refund)
    assert status(order) == OrderStatus.PENDING

    send(client, fake_stripe, "checkout.session.completed", order)

    assert status(order) == OrderStatus.REFUNDED
    assert order.transitions.get(to_status="refunded").event_id == refund["id"]


def test_partial_refund_that_arrives_first_keeps_order_paid(client, fake_stripe, order):
    fake_stripe.complete(order.checkout_session_id)
    post_event(
        client,
        fake_stripe,
        fake_stripe.charge_refunded(order.checkout_session_id, amount_refunded=100),
    )

    send(client, fake_stripe, "checkout.session.completed", order)

    assert status(order) == OrderStatus.PAID


def test_refunded_order_shows_as_refunded_in_my_orders(client, fake_stripe, order):
    pay(client, fake_stripe, order)
    post_event(client, fake_stripe, fake_stripe.charge_refunded(order.checkout_session_id))

    page = client.get("/").content.decode()

    assert f'data-order-id="{order.reference}" data-status="refunded"' in page


@pytest.mark.parametrize(
    "tamper",
    [{"amount_total": 1}, {"currency": "eur"}, {"amount_total": None}],
    ids=["amount", "currency", "missing-amount"],
)
def test_amount_or_currency_mismatch_flags_order_and_never_pays(
    client, fake_stripe, order, tamper, caplog
):
    fake_stripe.complete(order.checkout_session_id)
    fake_stripe.set_session_fields(order.checkout_session_id, **tamper)

    with caplog.at_level(logging.ERROR, logger="shop"):
        response = send(client, fake_stripe, "checkout.session.completed", order)

    order.refresh_from_db()
    assert response.status_code == 200
    assert order.status == OrderStatus.PENDING
    assert order.needs_review
    assert [r.levelname for r in caplog.records if "needs review" in r.getMessage()] == ["ERROR"]


def test_flagged_orders_are_filterable_in_admin(admin_client, client, fake_stripe, order, products):
    fake_stripe.complete(order.checkout_session_id)
    fake_stripe.set_session_fields(order.checkout_session_id, amount_total=1)
    send(client, fake_stripe, "checkout.session.completed", order)
    others = []
    for quantities in [(0, 1, 0), (0, 0, 2)]:
        other_browser = Client()
        buy(other_browser, products, *quantities)
        other = Order.objects.order_by("-id").first()
        pay(other_browser, fake_stripe, other)
        others.append(other)

    flagged = admin_client.get("/admin/shop/order/?needs_review__exact=1").content.decode()
    unflagged = admin_client.get("/admin/shop/order/?needs_review__exact=0").content.decode()

    assert order.reference in flagged
    assert not any(o.reference in flagged for o in others)
    assert all(o.reference in unflagged for o in others)
    assert order.reference not in unflagged


def test_session_paid_through_unexpected_session_is_flagged(client, fake_stripe, order):
    other = dict(
        fake_stripe.sessions[order.checkout_session_id],
        id="cs_test_other",
        status="complete",
        payment_status="paid",
    )
    post_event(client, fake_stripe, fake_stripe.event("checkout.session.completed", other))

    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING
    assert order.needs_review


def test_processing_error_answers_500_keeps_delivery_and_can_be_replayed(
    client, fake_stripe, order, monkeypatch
):
    def broken(event):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(webhooks, "_dispatch", broken)
    fake_stripe.complete(order.checkout_session_id)
    event = fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)

    response = post_event(client, fake_stripe, event)

    assert response.status_code == 500
    assert status(order) == OrderStatus.PENDING
    record = WebhookEvent.objects.get(event_id=event["id"])
    assert record.processed_at is None and "database hiccup" in record.error
    delivery = WebhookDelivery.objects.get(event_id=event["id"])
    assert not delivery.processed and "failed" in delivery.error

    monkeypatch.undo()
    call_command("replay_webhook_events")

    assert status(order) == OrderStatus.PAID
    record.refresh_from_db()
    assert record.processed_at is not None and record.error == ""


def test_stripe_retry_after_processing_error_applies_the_event(
    client, fake_stripe, order, monkeypatch
):
    monkeypatch.setattr(webhooks, "_dispatch", lambda event: 1 / 0)
    fake_stripe.complete(order.checkout_session_id)
    event = fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)
    assert post_event(client, fake_stripe, event).status_code == 500
    monkeypatch.undo()

    assert post_event(client, fake_stripe, event).status_code == 200
    assert status(order) == OrderStatus.PAID
    assert WebhookEvent.objects.get(event_id=event["id"]).attempts == 2


def test_replay_of_processed_event_is_a_no_op(client, fake_stripe, order, capsys):
    response = pay(client, fake_stripe, order)
    event_id = WebhookEvent.objects.get().event_id
    assert response.status_code == 200

    call_command("replay_webhook_events", event_id)

    assert "duplicate" in capsys.readouterr().out
    assert OrderTransition.objects.filter(order=order).count() == 1


def test_replay_of_unknown_event_fails_loudly(db):
    with pytest.raises(CommandError, match="unknown events"):
        call_command("replay_webhook_events", "evt_nope")


def test_admin_replay_action_processes_failed_event(
    admin_client, client, fake_stripe, order, monkeypatch
):
    monkeypatch.setattr(webhooks, "_dispatch", lambda event: 1 / 0)
    fake_stripe.complete(order.checkout_session_id)
    post_event(
        client,
        fake_stripe,
        fake_stripe.session_event("checkout.session.completed", order.checkout_session_id),
    )
    monkeypatch.undo()
    record = WebhookEvent.objects.get()

    admin_client.post(
        "/admin/shop/webhookevent/", {"action": "replay", "_selected_action": [record.pk]}
    )

    assert status(order) == OrderStatus.PAID


def test_prune_deletes_old_processed_and_forged_deliveries_only(client, fake_stripe, order):
    pay(client, fake_stripe, order)
    client.post(
        "/stripe/webhook/", data=b"{}", content_type="application/json", HTTP_STRIPE_SIGNATURE="x"
    )
    WebhookDelivery.objects.create(
        body="{}", signature_valid=True, kind="failed", event_id="evt_failed"
    )
    WebhookDelivery.objects.update(received_at=timezone.now() - timedelta(days=40))
    WebhookDelivery.objects.create(
        body="{}", signature_valid=True, kind="applied", event_id="evt_recent"
    )

    call_command("prune_webhook_deliveries", "--days", "30")

    assert sorted(WebhookDelivery.objects.values_list("event_id", flat=True)) == [
        "evt_failed",
        "evt_recent",
    ]


def test_transition_table_forbids_entering_a_status_twice(order):
    from django.db import IntegrityError, transaction

    OrderTransition.objects.create(
        order=order, from_status="pending", to_status="paid", cause="test"
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        OrderTransition.objects.create(
            order=order, from_status="pending", to_status="paid", cause="test"
        )


def test_database_refuses_a_second_open_order_for_one_browser(order):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.create(
            customer_key=order.customer_key,
            currency="usd",
            amount_total=100,
            cart_key="x",
            checkout_expires_at=order.checkout_expires_at,
        )


def test_event_payload_is_stored_for_replay(client, fake_stripe, order):
    pay(client, fake_stripe, order)
    record = WebhookEvent.objects.get()
    assert record.payload["data"]["object"]["id"] == order.checkout_session_id
    assert json.loads(WebhookDelivery.objects.get().body)["id"] == record.event_id


def test_partial_refunds_adding_up_to_the_whole_refund_the_order_once(client, fake_stripe, order):
    pay(client, fake_stripe, order)
    third = order.amount_total // 3

    for total in (third, 2 * third, order.amount_total, order.amount_total):
        event = fake_stripe.charge_refunded(order.checkout_session_id, amount_refunded=total)
        assert post_event(client, fake_stripe, event).status_code == 200
        expected = OrderStatus.REFUNDED if total == order.amount_total else OrderStatus.PAID
        assert status(order) == expected

    assert OrderTransition.objects.filter(order=order, to_status="refunded").count() == 1


def test_admin_replay_skips_processed_events_and_reports_failures(
    admin_client, client, fake_stripe, order, monkeypatch
):
    pay(client, fake_stripe, order)
    processed = WebhookEvent.objects.get()
    monkeypatch.setattr(webhooks, "_dispatch", lambda event: 1 / 0)
    failing = fake_stripe.charge_refunded(order.checkout_session_id)
    assert post_event(client, fake_stripe, failing).status_code == 500
    broken = WebhookEvent.objects.get(event_id=failing["id"])

    page = admin_client.post(
        "/admin/shop/webhookevent/",
        {"action": "replay", "_selected_action": [processed.pk, broken.pk]},
        follow=True,
    ).content.decode()

    messages = page.lower()  # the admin capitalises each message
    assert f"{processed.event_id.lower()}: duplicate: paid" in messages
    assert f"{broken.event_id.lower()}: failed" in messages
    broken.refresh_from_db()
    assert broken.processed_at is None and "ZeroDivisionError" in broken.error
    assert status(order) == OrderStatus.PAID
    assert OrderTransition.objects.filter(order=order).count() == 1


def test_admin_replay_is_refused_to_non_staff(client, fake_stripe, order, django_user_model):
    pay(client, fake_stripe, order)
    record = WebhookEvent.objects.get()
    django_user_model.objects.create_user("customer", password="pass-12345")
    visitor = Client()
    visitor.login(username="customer", password="pass-12345")

    response = visitor.post(
        "/admin/shop/webhookevent/", {"action": "replay", "_selected_action": [record.pk]}
    )

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    record.refresh_from_db()
    assert record.attempts == 1
