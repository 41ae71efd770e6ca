"""reconcile_payments on a schedule in the background: one chain of runs, however many workers."""

import time
from datetime import timedelta

import pytest
from django.test import Client
from django_tasks_db.models import DBTaskResult

from devtools.servers import db_worker, wait_until
from shop.background.models import Schedule
from shop.management.commands.db_worker import housekeeping
from shop.orders.models import OrderStatus
from shop.orders.tasks import (
    RECONCILE_SCHEDULE,
    payments_reconcile_schedule_ensure,
    payments_reconcile_scheduled,
)
from tests.conftest import buy, last_order, run_tasks

pytestmark = pytest.mark.django_db
TICK = payments_reconcile_scheduled.module_path


def ticks(**filters):
    return DBTaskResult.objects.filter(task_path=TICK, **filters)


def scheduled_id():
    return Schedule.objects.get(name=RECONCILE_SCHEDULE).task_id


def test_housekeeping_starts_one_chain_however_often_it_runs(db):
    housekeeping()
    housekeeping()
    payments_reconcile_schedule_ensure()

    (waiting,) = ticks()
    assert waiting.status == "READY" and str(waiting.id) == scheduled_id()


def test_each_run_enqueues_the_next_one_every_so_often(db, settings):
    settings.SHOP_RECONCILE_EVERY_MINUTES = 10
    first = payments_reconcile_schedule_ensure()

    assert run_tasks() == 1
    assert run_tasks() == 0  # the next run waits its turn

    done = ticks(status="SUCCESSFUL").get()
    assert str(done.id) == first and done.return_value == {
        "checked": 0,
        "changed": [],
        "errors": [],
    }
    successor = ticks(status="READY").get()
    assert str(successor.id) == scheduled_id()
    wait = successor.run_after - done.started_at
    assert timedelta(minutes=9, seconds=59) < wait < timedelta(minutes=10, seconds=5)


def test_a_stray_run_does_nothing_and_starts_no_second_chain(db):
    payments_reconcile_schedule_ensure()
    stray = payments_reconcile_scheduled.enqueue()  # as a second chain would have it

    assert run_tasks() == 2

    assert DBTaskResult.objects.get(pk=stray.id).return_value == {"skipped": True}
    assert ticks(status="READY").count() == 1
    assert ticks(return_value__checked=0).count() == 1


def test_a_chain_broken_by_a_failed_run_is_started_again(db):
    first = payments_reconcile_schedule_ensure()
    ticks().update(status="FAILED")

    second = payments_reconcile_schedule_ensure()

    assert second != first and scheduled_id() == second
    assert ticks(status="READY").count() == 1


def test_switched_off_no_run_is_started_and_a_waiting_one_ends_the_chain(db, settings):
    payments_reconcile_schedule_ensure()
    settings.SHOP_RECONCILE_EVERY_MINUTES = 0

    assert payments_reconcile_schedule_ensure() == ""
    run_tasks()

    assert ticks(status="READY").count() == 0
    assert ticks().get().return_value == {"skipped": True}
    assert scheduled_id() == ""


def test_a_scheduled_run_applies_a_payment_whose_webhook_was_missed(products, fake_stripe, smtp):
    buy(Client(), products, 1, 0, 0)
    order = last_order()
    fake_stripe.complete(order.checkout_session_id)  # paid at Stripe; no webhook reaches us

    payments_reconcile_schedule_ensure()
    run_tasks()  # the reconcile run, which enqueues the emails of the payment it applies…
    run_tasks()  # …sent by the worker's next pass

    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    assert order.transitions.get().cause == "reconcile"
    assert sorted(m.recipients for m in smtp.received) == [
        ("customer@example.com",),
        ("owner@example.com",),
    ]


@pytest.mark.django_db(transaction=True)
def test_two_workers_keep_one_chain(tmp_path):
    every = 1.2  # seconds
    env = {
        "SHOP_RECONCILE_EVERY_MINUTES": str(every / 60),
        "SHOP_WORKER_HOUSEKEEPING_SECONDS": "0.2",
    }
    most_waiting = 0
    with db_worker("worker-a", env, tmp_path), db_worker("worker-b", env, tmp_path):
        # Workers take a while to start on a busy machine: watch from the first run on.
        wait_until(lambda: ticks(status="SUCCESSFUL").exists(), timeout=120)
        watch_until = time.monotonic() + 7 * every
        while time.monotonic() < watch_until:
            most_waiting = max(most_waiting, ticks(status="READY").count())
            time.sleep(0.05)

    runs = list(
        ticks(status="SUCCESSFUL").exclude(return_value={"skipped": True}).order_by("started_at")
    )
    assert most_waiting == 1  # never two next runs: one chain
    assert ticks(return_value={"skipped": True}).count() == 0
    assert len(runs) >= 4
    gaps = [(b.started_at - a.started_at).total_seconds() for a, b in zip(runs, runs[1:])]
    assert min(gaps) >= every * 0.95, gaps  # no two runs close together, whichever worker
    print("runs by", [r.worker_ids for r in runs])
