from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from shop.orders.models import Order, OrderStatus
from tests.conftest import buy, last_order

pytestmark = pytest.mark.django_db


def new_order(products, fake_stripe, *quantities):
    buy(Client(), products, *quantities)
    return last_order()


def test_reconcile_applies_missed_payments_expiries_and_failures(products, fake_stripe, capsys):
    paid = new_order(products, fake_stripe, 1, 0, 0)
    expired = new_order(products, fake_stripe, 0, 1, 0)
    failed = new_order(products, fake_stripe, 0, 0, 1)
    still_open = new_order(products, fake_stripe, 1, 1, 0)
    fake_stripe.complete(paid.checkout_session_id)
    fake_stripe.expire(expired.checkout_session_id)
    fake_stripe.complete(failed.checkout_session_id, payment_status="unpaid")
    fake_stripe.fail_payment(failed.checkout_session_id)

    call_command("reconcile_payments")

    statuses = {o.reference: o.status for o in Order.objects.all()}
    assert statuses == {
        paid.reference: OrderStatus.PAID,
        expired.reference: OrderStatus.EXPIRED,
        failed.reference: OrderStatus.FAILED,
        still_open.reference: OrderStatus.PENDING,
    }
    out = capsys.readouterr().out
    assert f"{paid.reference}: paid" in out
    assert "checked 4 pending orders and 0 refunds, changed 3" in out
    assert Order.objects.get(pk=paid.pk).transitions.get().cause == "reconcile"
    assert Order.objects.get(pk=paid.pk).payment_intent_id.startswith("pi_")


def test_reconcile_leaves_delayed_payment_that_is_still_processing_pending(products, fake_stripe):
    order = new_order(products, fake_stripe, 1, 0, 0)
    fake_stripe.complete(order.checkout_session_id, payment_status="unpaid")

    call_command("reconcile_payments")

    assert Order.objects.get(pk=order.pk).status == OrderStatus.PENDING


def test_reconcile_is_idempotent(products, fake_stripe, capsys):
    order = new_order(products, fake_stripe, 1, 0, 0)
    fake_stripe.complete(order.checkout_session_id)
    call_command("reconcile_payments")
    capsys.readouterr()

    call_command("reconcile_payments")

    assert "checked 0 pending orders and 0 refunds, changed 0" in capsys.readouterr().out
    assert order.transitions.count() == 1


def test_reconcile_exits_nonzero_when_stripe_fails(products, fake_stripe):
    new_order(products, fake_stripe, 1, 0, 0)
    fake_stripe.fail_next(3, status=500)

    with pytest.raises(CommandError, match="checks failed"):
        call_command("reconcile_payments")
    assert last_order().status == OrderStatus.PENDING


def test_reconcile_expires_orders_whose_checkout_never_opened(products, fake_stripe):
    order = new_order(products, fake_stripe, 1, 0, 0)
    Order.objects.filter(pk=order.pk).update(
        checkout_session_id=None,
        checkout_url="",
        checkout_expires_at=timezone.now() - timedelta(minutes=1),
    )
    fake_stripe.requests.clear()

    call_command("reconcile_payments")

    assert Order.objects.get(pk=order.pk).status == OrderStatus.EXPIRED
    assert fake_stripe.requests_to("GET", "/v1/checkout/sessions") == []


def test_reconcile_flags_amount_mismatch(products, fake_stripe, capsys):
    order = new_order(products, fake_stripe, 1, 0, 0)
    fake_stripe.complete(order.checkout_session_id)
    fake_stripe.set_session_fields(order.checkout_session_id, amount_total=5)

    call_command("reconcile_payments")

    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING and order.needs_review
    assert "flagged" in capsys.readouterr().out


def paid_order(products, fake_stripe, *quantities):
    order = new_order(products, fake_stripe, *quantities)
    fake_stripe.complete(order.checkout_session_id)
    call_command("reconcile_payments")
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    return order


def test_reconcile_applies_a_refund_whose_webhook_was_missed(products, fake_stripe, capsys):
    refunded = paid_order(products, fake_stripe, 1, 0, 0)
    partly = paid_order(products, fake_stripe, 0, 2, 0)
    untouched = paid_order(products, fake_stripe, 0, 0, 1)
    fake_stripe.refund(refunded.checkout_session_id, amount=refunded.amount_total - 100)
    fake_stripe.refund(refunded.checkout_session_id, amount=100)  # two parts: all of it
    fake_stripe.refund(partly.checkout_session_id, amount=100)
    capsys.readouterr()

    call_command("reconcile_payments")

    statuses = {o.pk: o.status for o in Order.objects.all()}
    assert statuses == {
        refunded.pk: OrderStatus.REFUNDED,
        partly.pk: OrderStatus.PAID,
        untouched.pk: OrderStatus.PAID,
    }
    assert refunded.transitions.get(to_status="refunded").cause == "reconcile"
    assert f"{refunded.reference}: refunded" in capsys.readouterr().out


def test_reconcile_lists_refunds_a_page_at_a_time_not_per_order(products, fake_stripe):
    orders = [new_order(products, fake_stripe, 1, 0, 0) for _ in range(101)]
    for order in orders:
        fake_stripe.complete(order.checkout_session_id)
        fake_stripe.refund(order.checkout_session_id)
    call_command("reconcile_payments")  # pays them all, then finds all refunded
    fake_stripe.requests.clear()

    call_command("reconcile_payments")

    assert Order.objects.filter(status=OrderStatus.REFUNDED).count() == 101
    assert len(fake_stripe.requests_to("GET", "/v1/refunds")) == 2  # 100 + 1
    assert fake_stripe.requests_to("GET", "/v1/checkout/sessions") == []


def test_a_session_stripe_does_not_know_is_flagged_once_and_fails_no_later_run(
    products, fake_stripe, capsys
):
    order = new_order(products, fake_stripe, 1, 0, 0)
    del fake_stripe.sessions[order.checkout_session_id]  # deleted test data, another account

    call_command("reconcile_payments")
    first = capsys.readouterr().out
    call_command("reconcile_payments")
    second = capsys.readouterr().out

    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING and order.needs_review
    assert "unknown" in order.review_reason or "no checkout session" in order.review_reason
    assert f"{order.reference}: flagged" in first
    assert order.reference not in second


def test_reconcile_keeps_the_changes_it_could_make_and_exits_nonzero(products, fake_stripe):
    paid = new_order(products, fake_stripe, 1, 0, 0)
    unreachable = new_order(products, fake_stripe, 0, 1, 0)
    fake_stripe.complete(paid.checkout_session_id)
    fake_stripe.fail_next(
        3, status=500, prefix=f"/v1/checkout/sessions/{unreachable.checkout_session_id}"
    )

    with pytest.raises(CommandError, match="1 checks failed"):
        call_command("reconcile_payments")

    assert Order.objects.get(pk=paid.pk).status == OrderStatus.PAID
    assert Order.objects.get(pk=unreachable.pk).status == OrderStatus.PENDING
