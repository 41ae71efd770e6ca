"""Whether background work is being done: `/healthz/worker` for a monitor and the owner's
overview, from the workers' heartbeats and the due tasks' wait; with a real worker, started and
killed."""

import os
import signal
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.checks import Warning
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from devtools.servers import db_worker, wait_until
from shop.background.health import (
    PUBLIC_HEALTH_CACHE_KEY,
    PUBLIC_HEALTH_SECONDS,
    worker_heartbeat,
)
from shop.background.models import WorkerHeartbeat
from shop.checks import worker_alert_check
from shop.notifications.tasks import notification_send_task
from tests.test_overview import OVERVIEW_URL

pytestmark = pytest.mark.django_db


def health(client: Client) -> tuple[int, str]:
    response = client.get("/healthz/worker")
    assert response["Content-Type"].startswith("text/plain")
    assert "no-cache" in response["Cache-Control"]
    return response.status_code, response.content.decode()


def beat(worker_id: str = "worker-1", *, seconds_ago: float = 0) -> None:
    worker_heartbeat(worker_id=worker_id, started_at=timezone.now())
    if seconds_ago:
        seen = timezone.now() - timedelta(seconds=seconds_ago)
        WorkerHeartbeat.objects.filter(worker_id=worker_id).update(seen_at=seen)


def waiting_task(*, enqueued_ago: float, run_after_in: float | None = None) -> DBTaskResult:
    result = notification_send_task.enqueue(notification_id=1)
    now = timezone.now()
    changes = {"enqueued_at": now - timedelta(seconds=enqueued_ago)}
    if run_after_in is not None:
        changes["run_after"] = now + timedelta(seconds=run_after_in)
    DBTaskResult.objects.filter(pk=result.id).update(**changes)
    return DBTaskResult.objects.get(pk=result.id)


def test_without_any_worker_the_check_fails_and_says_so(client):
    assert health(client) == (
        503,
        "no worker running: no worker has ever run; no task waiting (alert after 5 min)\n",
    )


def test_a_worker_seen_just_now_with_nothing_due_is_healthy(client):
    beat()

    assert health(client) == (
        200,
        "working: 1 worker running, last heartbeat 0 s ago; no task waiting (alert after 5 min)\n",
    )


def test_a_worker_unseen_for_longer_than_the_alert_window_is_missing(client):
    beat(seconds_ago=301)

    status, text = health(client)
    assert status == 503
    assert text.startswith("no worker running: last heartbeat 5 min ago;")


def test_two_workers_count_once_each_however_often_they_beat(client):
    for _ in range(3):
        beat("worker-1")
        beat("worker-2")
    beat("worker-3", seconds_ago=900)  # stopped a while ago

    status, text = health(client)
    assert (status, WorkerHeartbeat.objects.count()) == (200, 3)
    assert text.startswith("working: 2 workers running, last heartbeat 0 s ago;")


def test_a_task_due_for_longer_than_the_alert_window_means_workers_are_behind(client):
    beat()
    waiting_task(enqueued_ago=30)
    waiting_task(enqueued_ago=600)

    assert health(client) == (
        503,
        "tasks waiting too long: 1 worker running, last heartbeat 0 s ago; 2 tasks due, the "
        "oldest waiting 10 min (alert after 5 min)\n",
    )


def test_a_task_waits_from_its_run_after_not_from_when_it_was_queued(client):
    beat()
    waiting_task(enqueued_ago=3600, run_after_in=600)  # a retry backing off: not due yet
    waiting_task(enqueued_ago=3600, run_after_in=-60)  # due a minute ago

    assert health(client) == (
        200,
        "working: 1 worker running, last heartbeat 0 s ago; 1 task due, the oldest waiting "
        "60 s (alert after 5 min)\n",
    )


def test_running_and_finished_tasks_are_not_waiting(client):
    beat()
    running = waiting_task(enqueued_ago=3600)
    done = waiting_task(enqueued_ago=3600)
    DBTaskResult.objects.filter(pk=running.pk).update(status="RUNNING")
    DBTaskResult.objects.filter(pk=done.pk).update(status="SUCCESSFUL")

    assert health(client)[0] == 200


def test_the_public_check_answers_from_a_few_seconds_old_reading(client):
    assert health(client)[0] == 503
    beat()
    assert health(client)[0] == 503  # the reading of a moment ago, however often it is asked

    cache.delete(PUBLIC_HEALTH_CACHE_KEY)  # as after PUBLIC_HEALTH_SECONDS
    assert health(client)[0] == 200
    assert PUBLIC_HEALTH_SECONDS <= 10  # a monitor polling every minute sees at most that late


def test_an_old_heartbeat_is_deleted_by_the_next_one():
    beat("gone", seconds_ago=2 * 86400)
    beat("alive")

    assert list(WorkerHeartbeat.objects.values_list("worker_id", flat=True)) == ["alive"]


def test_the_overview_tells_the_owner_when_background_work_is_not_done(admin_client):
    page = admin_client.get(OVERVIEW_URL).content.decode()
    assert 'id="worker-health" data-state="no_worker" role="alert"' in page
    assert "Background work is not being done." in page
    assert "python manage.py db_worker" in page

    beat()
    page = admin_client.get(OVERVIEW_URL).content.decode()
    assert 'id="worker-health" data-state="ok"' in page
    assert "Background work is not being done." not in page


def test_an_alert_window_within_two_housekeeping_rounds_is_warned_about(settings):
    settings.SHOP_WORKER_HOUSEKEEPING_SECONDS = 30
    settings.SHOP_WORKER_ALERT_SECONDS = 60
    (warning,) = worker_alert_check()
    assert isinstance(warning, Warning) and warning.id == "shop.W006"

    settings.SHOP_WORKER_ALERT_SECONDS = 61
    assert worker_alert_check() == []


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_is_seen_while_it_runs_and_missed_once_killed(client, settings, tmp_path):
    env = {"SHOP_WORKER_HOUSEKEEPING_SECONDS": "0.5", "SHOP_RECONCILE_EVERY_MINUTES": "0"}
    with db_worker("watched", env, tmp_path) as worker:
        wait_until(lambda: health(client)[0] == 200, timeout=120)
        assert WorkerHeartbeat.objects.get().worker_id == "watched"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)

    settings.SHOP_WORKER_ALERT_SECONDS = 2
    wait_until(lambda: health(client)[0] == 503, timeout=30)
    assert health(client)[1].startswith("no worker running: last heartbeat ")


def test_health_checks_answer_over_plain_http_where_pages_redirect_to_https(settings):
    settings.SECURE_SSL_REDIRECT = True
    plain = Client()  # its middleware is loaded with the setting above

    assert plain.get("/").status_code == 301
    assert plain.get("/healthz").status_code == 200
    assert plain.get("/healthz/worker").status_code == 503  # answered: no worker in this test
    assert plain.get("/healthz/other").status_code == 301
