"""Refunds started in the shop (admin and command), refunds made in Stripe's dashboard, their
events in any order, and disputes: against the fake Stripe over real HTTP, run by the real
worker code."""

import itertools
import re

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from shop.orders.links import order_link_token
from shop.orders.models import Order, OrderStatus, OrderTransition
from shop.refunds.models import Dispute, Refund, RefundOrigin, RefundStatus
from tests.conftest import buy, last_order, pay, post_event, run_retries, run_tasks

pytestmark = pytest.mark.django_db


@pytest.fixture
def paid(client, products, fake_stripe):
    buy(client, products, 2, 1, 0)
    order = last_order()
    pay(client, fake_stripe, order)
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    return order


def stripe_refunds(fake):
    return list(fake.refunds.values())


def test_full_refund_from_the_command_is_made_at_stripe_by_the_worker(paid, fake_stripe, capsys):
    call_command("refund_order", paid.reference)

    (refund,) = Refund.objects.all()
    assert (refund.status, refund.amount, refund.origin) == ("pending", paid.amount_total, "shop")
    assert stripe_refunds(fake_stripe) == []  # nothing is sent from the request itself

    assert run_tasks() >= 1

    (made,) = stripe_refunds(fake_stripe)
    assert made["amount"] == paid.amount_total
    assert made["payment_intent"] == paid.payment_intent_id
    assert made["metadata"] == {"order_id": paid.reference, "refund_id": str(refund.pk)}
    assert made["reason"] == "requested_by_customer"
    requests = fake_stripe.requests_to("POST", "/v1/refunds")
    assert [r.idempotency_key for r in requests] == [f"refund-{refund.pk}"]
    refund.refresh_from_db()
    assert (refund.status, refund.provider_refund_id) == ("succeeded", made["id"])
    paid.refresh_from_db()
    assert paid.status == OrderStatus.REFUNDED and paid.amount_refunded == paid.amount_total


def test_a_requested_refund_whose_task_vanished_is_made_once_after_housekeeping(paid, fake_stripe):
    from django_tasks_db.models import DBTaskResult

    from shop.refunds.services import refunds_resume
    from shop.refunds.tasks import refund_submit_task

    call_command("refund_order", paid.reference)
    (refund,) = Refund.objects.all()
    DBTaskResult.objects.filter(task_path=refund_submit_task.module_path).delete()  # lost

    assert refunds_resume() == [refund.pk]
    assert refunds_resume() == []  # it has one now: not given a second
    run_tasks()

    assert len(stripe_refunds(fake_stripe)) == 1
    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert refunds_resume() == []


def test_partial_refund_from_the_admin_keeps_the_order_paid_and_shows_it(
    admin_client, client, paid, fake_stripe
):
    page = admin_client.get(f"/admin/shop/order/{paid.pk}/refund/").content.decode()
    prefilled = re.search(r'name="amount" value="([0-9.]+)"', page).group(1)
    assert prefilled == f"{paid.amount_total / 100:.2f}"

    response = admin_client.post(
        f"/admin/shop/order/{paid.pk}/refund/", {"amount": "5.00", "reason": "duplicate"}
    )
    run_tasks()

    assert response.status_code == 302
    refund = Refund.objects.get()
    assert (refund.amount, refund.reason, refund.status) == (500, "duplicate", "succeeded")
    assert refund.requested_by.is_staff
    paid.refresh_from_db()
    assert paid.status == OrderStatus.PAID and paid.amount_refunded == 500
    assert "Partially refunded $5.00" in client.get("/").content.decode()
    change = admin_client.get(f"/admin/shop/order/{paid.pk}/change/").content.decode()
    assert "Partially refunded $5.00" in change
    link = f"/orders/{paid.reference}/?token={order_link_token(reference=paid.reference)}"
    assert "Partially refunded $5.00" in Client().get(link).content.decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--amount", "0"], "positive"),
        (["--amount", "-5"], "positive"),
        (["--amount", "999999"], "more than remains"),
    ],
)
def test_refusals_are_clear_and_change_nothing(paid, fake_stripe, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("refund_order", paid.reference, *args)

    assert Refund.objects.count() == 0
    run_tasks()
    assert stripe_refunds(fake_stripe) == []


def test_refunding_an_unknown_or_unpaid_order_is_refused(client, products, fake_stripe):
    buy(client, products, 1, 0, 0)
    pending = last_order()

    with pytest.raises(CommandError, match="no order"):
        call_command("refund_order", "ord_nope")
    with pytest.raises(CommandError, match="not paid"):
        call_command("refund_order", pending.reference)
    assert Refund.objects.count() == 0


def test_more_than_remains_after_a_partial_refund_is_refused(paid, fake_stripe):
    call_command("refund_order", paid.reference, "--amount", "500")

    with pytest.raises(CommandError, match="more than remains"):
        call_command("refund_order", paid.reference, "--amount", str(paid.amount_total - 499))
    call_command("refund_order", paid.reference, "--amount", str(paid.amount_total - 500))
    run_tasks()

    paid.refresh_from_db()
    assert paid.status == OrderStatus.REFUNDED
    assert sum(r["amount"] for r in stripe_refunds(fake_stripe)) == paid.amount_total


def test_stripe_failing_then_recovering_makes_exactly_one_refund(paid, fake_stripe):
    call_command("refund_order", paid.reference)
    fake_stripe.fail_next(3, status=500, prefix="/v1/refunds")  # one try and the SDK's retries

    run_tasks()
    refund = Refund.objects.get()
    assert refund.status == RefundStatus.PENDING and refund.last_error
    assert stripe_refunds(fake_stripe) == []

    run_retries()  # the retry, once its pause is over

    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert len(stripe_refunds(fake_stripe)) == 1


def test_a_refund_made_whose_answer_was_lost_is_found_not_made_again(paid, fake_stripe):
    call_command("refund_order", paid.reference)
    # Stripe makes it and the answer is lost, every try; then its idempotency key is gone too
    # (kept a day): only looking the refund up can keep a retry from refunding twice.
    fake_stripe.lose_answer_next(3, prefix="/v1/refunds")
    run_tasks()
    fake_stripe._idempotency.clear()

    run_retries()

    assert len(stripe_refunds(fake_stripe)) == 1
    assert Refund.objects.get().status == RefundStatus.SUCCEEDED


def test_stripe_refusing_the_refund_marks_it_failed_and_flags_the_order(paid, fake_stripe):
    call_command("refund_order", paid.reference, "--amount", "100")
    fake_stripe.refund(paid.checkout_session_id)  # the dashboard refunded it all meanwhile

    run_tasks()

    refund = Refund.objects.get(origin=RefundOrigin.SHOP)
    assert refund.status == RefundStatus.FAILED
    paid.refresh_from_db()
    assert paid.needs_review


@pytest.mark.django_db(transaction=True)
def test_two_owners_refunding_at_once_cannot_refund_more_than_was_paid(paid, fake_stripe):
    from shop.refunds.services import refund_request
    from tests.test_concurrency import in_threads

    amount = paid.amount_total * 2 // 3  # each alone fits; both together do not

    results = in_threads(2, lambda i: refund_request(order_reference=paid.reference, amount=amount))

    assert sorted(r.kind for r in results) == ["applied", "refused"]
    assert Refund.objects.count() == 1


def dashboard_refund_events(fake, order, amount):
    refund = fake.refund(order.checkout_session_id, amount=amount, status="pending")
    created = fake.refund_event("refund.created", refund["id"])
    fake.set_refund_status(refund["id"], "succeeded")
    updated = fake.refund_event("refund.updated", refund["id"])
    charge = fake.charge_refunded(order.checkout_session_id, amount_refunded=amount)
    return {"created": created, "updated": updated, "charge": charge}


@pytest.mark.parametrize(
    "order_of_events", list(itertools.permutations(["created", "updated", "charge"]))
)
def test_dashboard_refund_events_in_any_order_twice_give_the_same_record(
    client, paid, fake_stripe, order_of_events
):
    events = dashboard_refund_events(fake_stripe, paid, paid.amount_total)

    for name in [*order_of_events, *order_of_events]:
        assert post_event(client, fake_stripe, events[name]).status_code == 200

    (refund,) = Refund.objects.all()
    assert (refund.origin, refund.status, refund.amount) == (
        RefundOrigin.PROVIDER,
        RefundStatus.SUCCEEDED,
        paid.amount_total,
    )
    assert refund.order_id == paid.pk
    paid.refresh_from_db()
    assert paid.status == OrderStatus.REFUNDED
    assert OrderTransition.objects.filter(order=paid, to_status="refunded").count() == 1


def test_a_partial_dashboard_refund_is_recorded_and_shown(client, paid, fake_stripe):
    events = dashboard_refund_events(fake_stripe, paid, 300)
    post_event(client, fake_stripe, events["updated"])

    paid.refresh_from_db()
    assert paid.status == OrderStatus.PAID and paid.amount_refunded == 300
    assert Refund.objects.get().origin == RefundOrigin.PROVIDER
    assert "Partially refunded $3.00" in client.get("/").content.decode()


def test_refund_events_for_our_own_refund_update_its_record_not_a_new_one(
    client, paid, fake_stripe
):
    fake_stripe.next_refund_status = "pending"
    call_command("refund_order", paid.reference)
    run_tasks()
    (made,) = stripe_refunds(fake_stripe)
    assert Refund.objects.get().status == RefundStatus.PENDING
    fake_stripe.set_refund_status(made["id"], "succeeded")

    post_event(client, fake_stripe, fake_stripe.refund_event("refund.updated", made["id"]))

    refund = Refund.objects.get()
    assert (refund.origin, refund.status) == (RefundOrigin.SHOP, RefundStatus.SUCCEEDED)
    paid.refresh_from_db()
    assert paid.status == OrderStatus.REFUNDED


def test_a_failed_refund_gives_nothing_back(client, paid, fake_stripe):
    refund = fake_stripe.refund(paid.checkout_session_id, amount=400, status="pending")
    fake_stripe.set_refund_status(refund["id"], "failed")

    post_event(client, fake_stripe, fake_stripe.refund_event("refund.failed", refund["id"]))
    post_event(client, fake_stripe, fake_stripe.refund_event("refund.created", refund["id"]))

    assert Refund.objects.get().status == RefundStatus.FAILED
    paid.refresh_from_db()
    assert paid.amount_refunded == 0 and paid.status == OrderStatus.PAID


def test_reconcile_records_a_dashboard_refund_whose_events_were_all_missed(paid, fake_stripe):
    fake_stripe.refund(paid.checkout_session_id, amount=700)

    call_command("reconcile_payments")

    refund = Refund.objects.get()
    assert (refund.origin, refund.amount, refund.order_id) == ("provider", 700, paid.pk)
    paid.refresh_from_db()
    assert paid.amount_refunded == 700


def test_demo_refunds_are_local_and_follow_the_same_rules(client, products, demo):
    response = buy(client, products, 1, 0, 0)
    client.post(response["Location"], {"action": "pay", "email": "demo@example.com"})
    order = last_order()
    assert order.status == OrderStatus.PAID

    call_command("refund_order", order.reference, "--amount", "250")
    run_tasks()

    refund = Refund.objects.get()
    assert refund.status == RefundStatus.SUCCEEDED
    assert refund.provider_refund_id.startswith("re_demo_")
    order.refresh_from_db()
    assert order.amount_refunded == 250


# --- disputes -------------------------------------------------------------------------------


def dispute_events(fake, order, final_status):
    dispute = fake.dispute(order.checkout_session_id, reason="product_not_received")
    created = fake.dispute_event("charge.dispute.created", dispute["id"])
    fake.set_dispute_status(dispute["id"], "under_review")
    updated = fake.dispute_event("charge.dispute.updated", dispute["id"])
    fake.set_dispute_status(dispute["id"], final_status)
    closed = fake.dispute_event("charge.dispute.closed", dispute["id"])
    return {"created": created, "updated": updated, "closed": closed}


@pytest.mark.parametrize("outcome", ["won", "lost"])
@pytest.mark.parametrize(
    "order_of_events",
    [("created", "updated", "closed"), ("closed", "created", "updated"), ("updated", "closed")],
)
def test_disputes_in_any_order_twice_end_with_their_outcome(
    client, paid, fake_stripe, outcome, order_of_events
):
    events = dispute_events(fake_stripe, paid, outcome)

    for name in [*order_of_events, *order_of_events]:
        assert post_event(client, fake_stripe, events[name]).status_code == 200

    dispute = Dispute.objects.get()
    assert (dispute.status, dispute.outcome, dispute.order_id) == (outcome, outcome, paid.pk)
    assert dispute.reason == "product_not_received" and dispute.evidence_due_by is not None
    assert dispute.closed_at is not None
    paid.refresh_from_db()
    assert paid.disputed and paid.status == OrderStatus.PAID


def test_a_dispute_of_a_charge_that_is_not_ours_changes_nothing(client, products, fake_stripe):
    other = Client()
    buy(other, products, 1, 0, 0)
    order = last_order()
    fake_stripe.complete(order.checkout_session_id)  # paid at Stripe, never applied here
    dispute = fake_stripe.dispute(order.checkout_session_id)

    response = post_event(
        client, fake_stripe, fake_stripe.dispute_event("charge.dispute.created", dispute["id"])
    )

    assert response.status_code == 200
    assert Dispute.objects.count() == 0
    assert not Order.objects.filter(disputed=True).exists()


def test_disputed_orders_are_filterable_in_the_admin(
    admin_client, client, paid, products, fake_stripe
):
    events = dispute_events(fake_stripe, paid, "lost")
    post_event(client, fake_stripe, events["created"])
    other = Client()
    buy(other, products, 0, 0, 1)
    undisputed_order = last_order()
    pay(other, fake_stripe, undisputed_order)

    disputed = admin_client.get("/admin/shop/order/?disputed__exact=1").content.decode()
    undisputed = admin_client.get("/admin/shop/order/?disputed__exact=0").content.decode()

    assert paid.reference in disputed and undisputed_order.reference not in disputed
    assert paid.reference not in undisputed and undisputed_order.reference in undisputed
