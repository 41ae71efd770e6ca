"""Emails after the payment: recorded with the change, sent by the worker over real SMTP, once."""

import io
import re
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from shop.notifications.models import Notification, NotificationKind, NotificationStatus
from shop.notifications.services import email_retry_delay, notification_send
from shop.orders.models import OrderStatus
from shop.orders.services import order_transition
from shop.payments import webhooks
from tests.conftest import buy, last_order, pay, post_event, run_tasks

pytestmark = pytest.mark.django_db
CUSTOMER = "customer@example.com"  # what the fake Stripe's Checkout collects
OWNER = "owner@example.com"  # SHOP_OWNER_EMAIL in the test settings


@pytest.fixture
def order(client, products, fake_stripe):
    buy(client, products, 2, 0, 1)
    return last_order()


def paid(client, fake_stripe, order):
    assert pay(client, fake_stripe, order).status_code == 200
    order.refresh_from_db()
    return order


def link_in(text):
    (url,) = set(re.findall(r"http://testserver(/orders/\S+)", text))
    return url


def test_a_paid_order_tells_the_customer_and_the_owner_once(client, fake_stripe, order, smtp):
    paid(client, fake_stripe, order)

    # Recorded with the payment, sent by the worker: nothing goes out inside the webhook.
    assert smtp.received == []
    assert set(
        Notification.objects.filter(order=order).values_list("kind", "recipient", "status")
    ) == {
        (NotificationKind.ORDER_CONFIRMATION, CUSTOMER, NotificationStatus.QUEUED),
        (NotificationKind.NEW_ORDER, OWNER, NotificationStatus.QUEUED),
    }
    assert run_tasks() == 2

    (confirmation,) = smtp.to(CUSTOMER)
    (notice,) = smtp.to(OWNER)
    assert len(smtp.received) == 2
    assert order.reference in confirmation.subject
    assert "New order" in notice.subject and order.reference in notice.subject
    for message in (confirmation, notice):
        assert order.reference in message.text and order.reference in message.html
        assert "$" in message.text and "Total" in message.text
        assert "<img" not in message.html  # readable without images
    assert f"/admin/shop/order/{order.pk}/change/" in notice.text
    assert CUSTOMER in notice.text
    assert Notification.objects.filter(status=NotificationStatus.SENT, attempts=1).count() == 2
    assert all(n.sent_at for n in Notification.objects.all())

    # Nothing more, however often the news comes again or the worker runs.
    assert (
        post_event(
            client,
            fake_stripe,
            fake_stripe.session_event("checkout.session.completed", order.checkout_session_id),
        ).status_code
        == 200
    )
    client.get(f"/checkout/success/?session_id={order.checkout_session_id}")
    run_tasks()
    assert len(smtp.received) == 2
    assert Notification.objects.count() == 2


def test_an_event_replayed_by_an_operator_sends_nothing_more(client, fake_stripe, order, smtp):
    fake_stripe.complete(order.checkout_session_id)
    event = fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)
    post_event(client, fake_stripe, event)
    run_tasks()

    call_command("replay_webhook_events", event["id"], stdout=io.StringIO())
    run_tasks()

    assert len(smtp.received) == 2 and Notification.objects.count() == 2


def test_the_confirmation_lists_the_lines_and_its_link_opens_the_order(
    client, fake_stripe, order, products, smtp
):
    paid(client, fake_stripe, order)
    run_tasks()
    (confirmation,) = smtp.to(CUSTOMER)

    for part in (confirmation.text, confirmation.html):
        assert f"{products[0].name} × 2" in part and f"{products[2].name} × 1" in part
    total = order.amount_total
    assert f"${total // 100}.{total % 100:02d}" in confirmation.text
    url = link_in(confirmation.text)
    assert url in confirmation.html.replace("&amp;", "&")

    page = Client().get(url)  # another browser: the link is all it needs
    assert page.status_code == 200
    assert f'data-order-id="{order.reference}" data-status="paid"' in page.content.decode()


def test_a_full_refund_sends_one_refund_confirmation(client, fake_stripe, order, smtp):
    paid(client, fake_stripe, order)
    refund = fake_stripe.charge_refunded(order.checkout_session_id)

    for _ in range(3):
        post_event(client, fake_stripe, refund)
    run_tasks()

    (refunded,) = [m for m in smtp.to(CUSTOMER) if "Refund" in m.subject]
    assert order.reference in refunded.subject and "refunded" in refunded.text
    assert len(smtp.received) == 3  # confirmation, owner's notice, refund


def test_each_succeeded_refund_is_told_once_partial_ones_too(client, fake_stripe, order, smtp):
    paid(client, fake_stripe, order)
    run_tasks()
    smtp.reset()
    for total in (100, order.amount_total):
        event = fake_stripe.charge_refunded(order.checkout_session_id, amount_refunded=total)
        post_event(client, fake_stripe, event)
        post_event(client, fake_stripe, event)  # Stripe may deliver it twice
    run_tasks()

    refunds = Notification.objects.filter(kind=NotificationKind.REFUND)
    assert refunds.count() == 2 and {n.refund.amount for n in refunds} == {
        100,
        order.amount_total - 100,
    }
    assert (
        sorted(m.subject for m in smtp.received)
        == [f"Refund for your Corner Shop order {order.reference}"] * 2
    )
    texts = sorted(m.text for m in smtp.received)
    assert any("Part of your order has been refunded" in t and "$1.00" in t for t in texts)


def test_a_flagged_order_tells_the_owner_once_and_the_customer_nothing(
    client, fake_stripe, order, smtp
):
    fake_stripe.complete(order.checkout_session_id)
    fake_stripe.set_session_fields(order.checkout_session_id, amount_total=order.amount_total + 1)
    for _ in range(2):  # two distinct events, both flagging
        event = fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)
        assert post_event(client, fake_stripe, event).status_code == 200
    run_tasks()

    (review,) = smtp.received
    assert review.recipients == (OWNER,)
    assert "needs your review" in review.subject and order.reference in review.subject
    assert "charged" in review.text  # the reason
    order.refresh_from_db()
    assert order.needs_review and order.status == OrderStatus.PENDING


def test_a_demo_payment_confirms_to_the_address_given_on_the_page(client, products, demo, smtp):
    response = buy(client, products, 1, 0, 0)
    client.post(response["Location"], {"action": "pay", "email": "Jo@Example.com"})
    run_tasks()

    (confirmation,) = smtp.to("jo@example.com")
    assert last_order().reference in confirmation.subject
    assert len(smtp.to(OWNER)) == 1


def test_without_an_owner_address_only_the_customer_hears(
    client, fake_stripe, order, smtp, settings
):
    settings.SHOP_OWNER_EMAIL = ""
    paid(client, fake_stripe, order)
    run_tasks()

    assert [m.recipients for m in smtp.received] == [(CUSTOMER,)]


def test_a_rolled_back_payment_sends_nothing(fake_stripe, order, smtp):
    with pytest.raises(RuntimeError), transaction.atomic():
        assert order_transition(order=order, to=OrderStatus.PAID, cause="test", email=CUSTOMER)
        raise RuntimeError("the rest of the change failed")

    assert not Notification.objects.exists()
    assert not DBTaskResult.objects.exists()
    assert run_tasks() == 0
    assert smtp.received == []


def test_a_webhook_whose_processing_fails_sends_nothing_until_stripe_retries(
    client, fake_stripe, order, smtp, monkeypatch
):
    finish = webhooks._delivery_finish
    calls = []

    def fail_once(delivery_id, result):
        calls.append(result)
        if len(calls) == 1:
            raise RuntimeError("database hiccup after the order was paid")
        return finish(delivery_id, result)

    monkeypatch.setattr(webhooks, "_delivery_finish", fail_once)
    fake_stripe.complete(order.checkout_session_id)
    event = fake_stripe.session_event("checkout.session.completed", order.checkout_session_id)

    assert post_event(client, fake_stripe, event).status_code == 500
    assert not Notification.objects.exists() and run_tasks() == 0

    assert post_event(client, fake_stripe, event).status_code == 200
    run_tasks()
    assert sorted(m.recipients for m in smtp.received) == [(CUSTOMER,), (OWNER,)]


def test_smtp_refusing_for_a_while_delivers_once_after_it_comes_back(
    client, fake_stripe, order, smtp, settings
):
    # Short pauses, yet long enough that a worker pass never reaches the next attempt.
    settings.SHOP_EMAIL_RETRY_FIRST_SECONDS = settings.SHOP_EMAIL_RETRY_MAX_SECONDS = 0.5
    smtp.refuse()
    paid(client, fake_stripe, order)

    run_tasks()
    confirmation = Notification.objects.get(kind=NotificationKind.ORDER_CONFIRMATION)
    assert (confirmation.status, confirmation.attempts) == (NotificationStatus.QUEUED, 1)
    assert "SMTPRecipientsRefused" in confirmation.last_error and "451" in confirmation.last_error
    # The failed attempt is on the task's record too, and the next one is planned later.
    assert DBTaskResult.objects.filter(status="FAILED", traceback__contains="451").count() == 2
    retries = DBTaskResult.objects.filter(status="READY")
    assert retries.count() == 2 and all(r.run_after > r.enqueued_at for r in retries)

    deadline = timezone.now() + timedelta(seconds=20)
    while Notification.objects.filter(status=NotificationStatus.QUEUED).exists():
        assert timezone.now() < deadline
        if smtp.attempts >= 6:
            smtp.refuse(False)
        run_tasks()
        time.sleep(0.1)

    assert sorted(m.recipients for m in smtp.received) == [(CUSTOMER,), (OWNER,)]
    confirmation.refresh_from_db()
    assert confirmation.status == NotificationStatus.SENT and confirmation.attempts >= 3
    assert "451" in confirmation.last_error  # what went wrong before stays visible


def test_an_email_failing_for_a_day_is_marked_failed_and_shown_in_the_admin(
    client, fake_stripe, order, smtp
):
    smtp.refuse()
    paid(client, fake_stripe, order)
    Notification.objects.update(created_at=timezone.now() - timedelta(hours=24, minutes=5))

    run_tasks()

    assert set(Notification.objects.values_list("status", flat=True)) == {NotificationStatus.FAILED}
    assert not DBTaskResult.objects.filter(status="READY").exists()  # no more attempts
    admin = Client()
    admin.force_login(User.objects.create_superuser("owner", "o@example.com", "pw"))
    page = admin.get(f"/admin/shop/order/{order.pk}/change/").content.decode()
    assert "Failed" in page and "SMTPRecipientsRefused" in page


def test_retries_go_on_for_at_least_a_day_with_growing_pauses():
    delays = [email_retry_delay(attempt) for attempt in range(1, 40)]
    assert delays[0] == timedelta(minutes=1) and delays[1] == timedelta(minutes=2)
    assert max(delays) == timedelta(hours=1)
    # A message is given up once it has failed for 24 hours: count the attempts until then.
    elapsed, attempts = timedelta(0), 1
    while elapsed < timedelta(hours=24):
        elapsed += email_retry_delay(attempts)
        attempts += 1
    assert 20 < attempts < 40


def test_a_sent_email_is_not_sent_again_by_a_repeated_task(client, fake_stripe, order, smtp):
    paid(client, fake_stripe, order)
    run_tasks()
    confirmation = Notification.objects.get(kind=NotificationKind.ORDER_CONFIRMATION)

    assert notification_send(notification_id=confirmation.pk) == "already sent"
    assert len(smtp.to(CUSTOMER)) == 1


def test_resend_in_the_admin_sends_a_new_copy_on_purpose(client, fake_stripe, order, smtp):
    paid(client, fake_stripe, order)
    run_tasks()
    confirmation = Notification.objects.get(kind=NotificationKind.ORDER_CONFIRMATION)
    admin = Client()
    admin.force_login(User.objects.create_superuser("owner", "o@example.com", "pw"))

    response = admin.post(
        "/admin/shop/notification/",
        {"action": "resend_copy", "_selected_action": [confirmation.pk]},
        follow=True,
    )
    run_tasks()

    assert "is on its way" in response.content.decode()
    assert len(smtp.to(CUSTOMER)) == 2
    copy = Notification.objects.get(resend=True)
    assert (copy.kind, copy.status, copy.recipient) == (
        NotificationKind.ORDER_CONFIRMATION,
        NotificationStatus.SENT,
        CUSTOMER,
    )
    order_page = admin.get(f"/admin/shop/order/{order.pk}/change/").content.decode()
    assert order_page.count("Order confirmation") >= 2
