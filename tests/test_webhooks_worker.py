"""SHOP_WEBHOOK_PROCESSING=worker: a verified delivery is kept and queued in one transaction,
answered 202 at once, and applied by the real database worker, once, with its own retries."""

import json

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from shop.checks import webhook_processing_check
from shop.notifications.models import Notification
from shop.orders.models import Order, OrderStatus, OrderTransition
from shop.payments import webhooks
from shop.payments.models import WebhookDelivery, WebhookEvent
from shop.payments.tasks import webhook_delivery_process_task
from shop.payments.webhooks import webhook_deliveries_resume, webhook_retry_delay
from tests.conftest import buy, last_order, post_event, run_retries, run_tasks

pytestmark = pytest.mark.django_db
TASK = webhook_delivery_process_task.module_path


@pytest.fixture
def in_worker(settings):
    settings.SHOP_WEBHOOK_PROCESSING = "worker"


@pytest.fixture
def order(client, products, fake_stripe, in_worker):
    buy(client, products, 1, 2, 0)
    order = last_order()
    fake_stripe.complete(order.checkout_session_id)
    return order


def completed(fake, order):
    return fake.session_event("checkout.session.completed", order.checkout_session_id)


def status(order: Order) -> str:
    order.refresh_from_db()
    return order.status


def processing_tasks(**filters):
    return DBTaskResult.objects.filter(task_path=TASK, **filters)


def test_a_payment_is_kept_answered_202_and_applied_by_the_worker(client, fake_stripe, order):
    event = completed(fake_stripe, order)

    response = post_event(client, fake_stripe, event)

    assert response.status_code == 202
    assert response.json()["kind"] == "queued"
    assert status(order) == OrderStatus.PENDING  # nothing applied in the request
    delivery = WebhookDelivery.objects.get()
    assert (delivery.kind, delivery.event_id, json.loads(delivery.body)) == ("", event["id"], event)
    (task,) = processing_tasks(status="READY")
    assert task.args_kwargs["kwargs"] == {"delivery_id": delivery.pk}

    assert run_tasks() >= 1

    assert status(order) == OrderStatus.PAID
    delivery.refresh_from_db()
    assert delivery.kind == "applied" and delivery.processed
    record = WebhookEvent.objects.get(event_id=event["id"])
    assert record.processed_at is not None and record.attempts == 1
    processing_tasks(status="SUCCESSFUL").get()
    assert Notification.objects.filter(order=order).count() == 2  # customer and owner, once


def test_the_same_event_queued_many_times_is_applied_once(client, fake_stripe, order):
    event = completed(fake_stripe, order)

    statuses = [post_event(client, fake_stripe, event).status_code for _ in range(5)]
    run_tasks()

    assert statuses == [202] * 5
    assert status(order) == OrderStatus.PAID
    assert OrderTransition.objects.filter(order=order, to_status=OrderStatus.PAID).count() == 1
    kinds = sorted(WebhookDelivery.objects.values_list("kind", flat=True))
    assert kinds == ["applied"] + ["duplicate"] * 4
    assert Notification.objects.filter(order=order).count() == 2


def test_a_delivery_of_an_applied_event_is_settled_at_once_with_no_task(client, fake_stripe, order):
    event = completed(fake_stripe, order)
    post_event(client, fake_stripe, event)
    run_tasks()

    response = post_event(client, fake_stripe, event)

    assert response.status_code == 200 and response.json()["kind"] == "duplicate"
    assert processing_tasks().count() == 1
    assert WebhookDelivery.objects.filter(kind="duplicate").count() == 1


def test_a_forged_delivery_is_refused_and_queues_nothing(client, fake_stripe, order):
    response = post_event(client, fake_stripe, completed(fake_stripe, order), secret="whsec_wrong")

    assert response.status_code == 400
    assert not processing_tasks().exists()
    assert WebhookDelivery.objects.get().kind == "refused"
    assert run_tasks() == 0 and status(order) == OrderStatus.PENDING


def test_a_failure_is_recorded_visibly_and_retried_by_the_worker(
    client, fake_stripe, order, monkeypatch
):
    monkeypatch.setattr(webhooks, "_dispatch", lambda event: 1 / 0)
    event = completed(fake_stripe, order)
    assert post_event(client, fake_stripe, event).status_code == 202

    started = timezone.now()
    run_tasks()

    assert status(order) == OrderStatus.PENDING
    delivery = WebhookDelivery.objects.get()
    assert delivery.kind == "failed" and "the worker will retry" in delivery.outcome
    record = WebhookEvent.objects.get(event_id=event["id"])
    assert record.processed_at is None and "ZeroDivisionError" in record.error
    failed = processing_tasks(status="FAILED").get()
    assert "ProcessingFailed" in failed.exception_class_path
    # The next attempt was written with the failure, and waits its pause.
    retry = processing_tasks(status="READY").get()
    assert retry.args_kwargs["kwargs"] == {"delivery_id": delivery.pk, "attempt": 2}
    assert retry.run_after >= started + webhook_retry_delay(1)
    assert run_tasks() == 0  # not before its time

    monkeypatch.undo()
    run_retries()

    assert status(order) == OrderStatus.PAID
    delivery.refresh_from_db()
    record.refresh_from_db()
    assert delivery.kind == "applied" and record.attempts == 2 and record.error == ""


def test_a_payment_queued_behind_emails_is_applied_before_them(
    client, products, fake_stripe, order
):
    post_event(client, fake_stripe, completed(fake_stripe, order))
    run_tasks(max_tasks=1)  # paid: its two emails wait
    buy(Client(), products, 0, 1, 0)
    later = last_order()
    fake_stripe.complete(later.checkout_session_id)
    post_event(client, fake_stripe, completed(fake_stripe, later))

    run_tasks(max_tasks=1)

    assert status(later) == OrderStatus.PAID
    assert Notification.objects.filter(order=order, status="queued").count() == 2


def test_pauses_between_attempts_double_up_to_an_hour():
    pauses = [webhook_retry_delay(attempt).total_seconds() for attempt in range(1, 12)]

    assert pauses[:4] == [10, 20, 40, 80]
    assert pauses[-1] == 3600 and pauses == sorted(pauses)


def test_after_the_retry_period_the_failure_stays_for_an_operator_to_replay(
    client, fake_stripe, order, monkeypatch, settings
):
    settings.SHOP_WEBHOOK_RETRY_HOURS = 0
    monkeypatch.setattr(webhooks, "_dispatch", lambda event: 1 / 0)
    event = completed(fake_stripe, order)
    post_event(client, fake_stripe, event)

    run_tasks()

    assert not processing_tasks(status="READY").exists()
    assert webhook_deliveries_resume() == []  # past its period: left to the operator
    assert WebhookDelivery.objects.get().kind == "failed"
    monkeypatch.undo()
    call_command("replay_webhook_events", event["id"])
    assert status(order) == OrderStatus.PAID


def test_a_queued_delivery_that_lost_its_task_gets_one_from_housekeeping(
    client, fake_stripe, order
):
    post_event(client, fake_stripe, completed(fake_stripe, order))
    delivery = WebhookDelivery.objects.get()
    processing_tasks().delete()  # lost, however that happened

    assert webhook_deliveries_resume() == [delivery.pk]
    assert webhook_deliveries_resume() == []  # it has one now: not given a second
    run_tasks()

    assert status(order) == OrderStatus.PAID
    delivery.refresh_from_db()
    assert delivery.kind == "applied"
    assert webhook_deliveries_resume() == []


def test_housekeeping_leaves_deliveries_alone_when_webhooks_are_applied_in_the_request(
    client, fake_stripe, order, settings
):
    post_event(client, fake_stripe, completed(fake_stripe, order))
    processing_tasks().delete()
    settings.SHOP_WEBHOOK_PROCESSING = "request"

    assert webhook_deliveries_resume() == []


def test_the_success_page_pays_at_once_while_the_webhook_waits_for_the_worker(
    client, fake_stripe, order
):
    event = completed(fake_stripe, order)
    assert post_event(client, fake_stripe, event).status_code == 202

    page = client.get(f"/checkout/success/?session_id={order.checkout_session_id}")

    assert page.status_code == 200
    assert status(order) == OrderStatus.PAID
    run_tasks()
    record = WebhookEvent.objects.get(event_id=event["id"])
    assert record.kind == "no_change"
    assert OrderTransition.objects.filter(order=order, to_status=OrderStatus.PAID).count() == 1
    assert Notification.objects.filter(order=order).count() == 2


def test_a_refund_queued_before_its_payment_ends_refunded(client, fake_stripe, order):
    """Out of order in the queue too: the refund's event is applied first, then the payment's."""
    refund = fake_stripe.charge_refunded(order.checkout_session_id)
    post_event(client, fake_stripe, refund)
    post_event(client, fake_stripe, completed(fake_stripe, order))

    run_tasks()

    assert status(order) == OrderStatus.REFUNDED


def test_an_unknown_processing_mode_fails_the_system_check(settings):
    settings.SHOP_WEBHOOK_PROCESSING = "wroker"

    (error,) = webhook_processing_check()

    assert error.id == "shop.E004"


def test_a_browser_client_with_no_worker_mode_still_gets_the_request_answer(products, fake_stripe):
    """The default: applied in the request, 200."""
    client = Client()
    buy(client, products, 1)
    order = last_order()
    fake_stripe.complete(order.checkout_session_id)

    assert post_event(client, fake_stripe, completed(fake_stripe, order)).status_code == 200
    assert status(order) == OrderStatus.PAID
    assert not processing_tasks().exists()


def test_the_task_row_written_with_the_delivery_is_the_one_the_library_writes(
    client, fake_stripe, order
):
    post_event(client, fake_stripe, completed(fake_stripe, order))
    delivery = WebhookDelivery.objects.get()
    ours = processing_tasks().get()
    theirs = webhook_delivery_process_task.enqueue(delivery_id=delivery.pk)

    fields = [f.attname for f in DBTaskResult._meta.concrete_fields]
    library = DBTaskResult.objects.values(*fields).get(pk=theirs.id)
    written = DBTaskResult.objects.values(*fields).get(pk=ours.pk)
    for varying in ("id", "enqueued_at"):
        del library[varying], written[varying]
    assert written == library
    assert abs(ours.enqueued_at - timezone.now()).total_seconds() < 60


def test_the_admin_lists_deliveries_waiting_for_the_worker(
    admin_client, client, fake_stripe, order
):
    event = completed(fake_stripe, order)
    post_event(client, fake_stripe, event)

    waiting = admin_client.get("/admin/shop/webhookdelivery/?state=waiting").content.decode()
    run_tasks()
    after = admin_client.get("/admin/shop/webhookdelivery/?state=waiting").content.decode()
    applied = admin_client.get("/admin/shop/webhookdelivery/?state=applied").content.decode()

    assert event["id"] in waiting and event["id"] not in after
    assert event["id"] in applied


def test_a_second_run_of_a_delivery_s_task_leaves_its_outcome_as_it_was(client, fake_stripe, order):
    """A task run twice (its worker thought lost, only slow) applies nothing more and does not
    relabel the delivery that applied the event."""
    from shop.payments.types import decode_event
    from shop.payments.webhooks import webhook_delivery_process, webhook_event_process

    event = completed(fake_stripe, order)
    post_event(client, fake_stripe, event)
    delivery = WebhookDelivery.objects.get()
    run_tasks()

    again = webhook_delivery_process(delivery_id=delivery.pk)
    racing = webhook_event_process(event=decode_event(event), delivery_id=delivery.pk)

    assert again.kind == "duplicate" and racing.kind == "duplicate"
    delivery.refresh_from_db()
    assert delivery.kind == "applied"
    assert OrderTransition.objects.filter(order=order, to_status=OrderStatus.PAID).count() == 1
