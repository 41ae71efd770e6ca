"""The worker: real `db_worker` processes, killed and raced; housekeeping that keeps every task
and every email alive."""

import os
import signal
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from devtools.servers import db_worker, wait_until
from shop.background.engine import tasks_recover_lost
from shop.management.commands.db_worker import housekeeping
from shop.notifications.models import Notification, NotificationStatus
from tests.conftest import buy, last_order, pay, run_tasks
from tests.workers import worker_log

pytestmark = pytest.mark.django_db(transaction=True)
CUSTOMER, OWNER = "customer@example.com", "owner@example.com"


@pytest.fixture
def paid_order(products, fake_stripe):
    client = Client()
    buy(client, products, 1, 0, 1)
    order = last_order()
    assert pay(client, fake_stripe, order).status_code == 200
    return order


def test_a_worker_killed_mid_send_leaves_the_email_to_another_worker(paid_order, smtp, tmp_path):
    env = {
        "EMAIL_HOST": smtp.host,
        "EMAIL_PORT": str(smtp.port),
        "EMAIL_USE_TLS": "false",
        "SHOP_TASK_LOST_AFTER_SECONDS": "3",
        "SHOP_WORKER_HOUSEKEEPING_SECONDS": "0.5",
        "SHOP_RECONCILE_EVERY_MINUTES": "0",  # only the emails in play here
    }
    smtp.hold()  # the first worker to send is kept waiting at its recipient…
    with db_worker("worker-a", env, tmp_path) as worker_a:
        smtp.wait_until_held(timeout=120)  # a busy machine starts a worker slowly
        (running,) = DBTaskResult.objects.filter(status="RUNNING")
        assert running.worker_ids == ["worker-a"]
        os.kill(worker_a.pid, signal.SIGKILL)  # …and killed there, mid-task
        assert worker_a.wait(timeout=10) == -signal.SIGKILL
    smtp.release()
    running.refresh_from_db()
    assert running.status == "RUNNING"  # the library alone would leave it so for ever
    assert smtp.received == []

    with db_worker("worker-b", env, tmp_path):
        wait_until(
            lambda: not Notification.objects.filter(status=NotificationStatus.QUEUED).exists(),
            timeout=120,
        )

    assert sorted(m.recipients for m in smtp.received) == [(CUSTOMER,), (OWNER,)]
    running.refresh_from_db()
    assert (running.status, running.worker_ids) == ("SUCCESSFUL", ["worker-a", "worker-b"])
    assert "lost its worker worker-a" in worker_log(tmp_path, "worker-b")
    assert set(Notification.objects.values_list("status", "attempts")) == {("sent", 1)}


def test_a_lost_task_is_made_ready_once_however_many_workers_look(paid_order):
    task = DBTaskResult.objects.first()
    DBTaskResult.objects.filter(pk=task.pk).update(
        status="RUNNING", started_at=timezone.now() - timedelta(minutes=10), worker_ids=["gone"]
    )

    first = tasks_recover_lost(lost_after=timedelta(minutes=5))
    second = tasks_recover_lost(lost_after=timedelta(minutes=5))

    assert (first, second) == ([str(task.pk)], [])
    task.refresh_from_db()
    assert task.status == "READY"


def test_a_task_running_less_than_the_grace_period_is_left_alone(paid_order):
    DBTaskResult.objects.update(status="RUNNING", started_at=timezone.now())

    assert tasks_recover_lost(lost_after=timedelta(minutes=5)) == []


def test_a_queued_email_whose_task_vanished_gets_a_new_one(paid_order, smtp, settings):
    settings.SHOP_RECONCILE_EVERY_MINUTES = 0
    # As if writing the next attempt had failed after a failed send: no task left for it.
    DBTaskResult.objects.all().delete()

    housekeeping()
    housekeeping()  # a second worker's housekeeping adds nothing more

    assert DBTaskResult.objects.filter(status="READY").count() == 2
    run_tasks()
    assert sorted(m.recipients for m in smtp.received) == [(CUSTOMER,), (OWNER,)]
    housekeeping()
    assert DBTaskResult.objects.filter(status="READY").count() == 0


def test_housekeeping_leaves_emails_with_a_waiting_task_alone(paid_order, settings):
    settings.SHOP_RECONCILE_EVERY_MINUTES = 0
    housekeeping()

    assert DBTaskResult.objects.count() == 2
