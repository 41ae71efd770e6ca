"""Whether background work is being done: each worker's heartbeat, and how long due tasks wait.

A worker that is not running fails quietly: emails, requested refunds, the scheduled reconcile
and (with SHOP_WEBHOOK_PROCESSING=worker) webhooks just wait in the database, and nothing
answers an error. Two signs tell it, read together by `/healthz/worker` and the owner's
overview:

- no worker has written its heartbeat (every housekeeping round, 30 s by default) within
  SHOP_WORKER_ALERT_SECONDS: none is running;
- a task has been due for longer than that: workers run, but none takes tasks (stuck in one,
  or too few for the load). A worker killed mid-task shows here too once housekeeping makes
  its task ready again.
"""

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import models
from django.db.models import Case, Count, F, Max, Min, Q, When
from django.utils import timezone
from django_tasks_db.models import DBTaskResult, get_date_max

from shop.background.models import WorkerHeartbeat

# A heartbeat older than this is deleted by the next one (a worker that stopped long ago).
HEARTBEAT_KEPT = timedelta(days=1)
# /healthz/worker is public and polled: its answer is reused this long, so that polling it, or a
# flood of requests, costs one read of each table every few seconds however large the backlog
# (100,000 due tasks take 17 ms to aggregate on PostgreSQL).
PUBLIC_HEALTH_CACHE_KEY = "shop:worker-health"
PUBLIC_HEALTH_SECONDS = 5


class WorkerState(models.TextChoices):
    OK = "ok", "working"
    NO_WORKER = "no_worker", "no worker running"
    BEHIND = "behind", "tasks waiting too long"


@dataclass(frozen=True)
class WorkerHealth:
    state: WorkerState
    now: datetime
    alert_after: timedelta
    # Workers whose heartbeat is within alert_after, and the newest heartbeat of any.
    workers: int
    last_seen: datetime | None
    # Tasks due now that no worker has taken, and since when the oldest of them is due.
    due: int
    oldest_due: datetime | None

    def describe(self) -> str:
        seen = (
            "no worker has ever run"
            if self.last_seen is None
            else f"last heartbeat {_ago(self.now - self.last_seen)} ago"
        )
        if self.workers:
            seen = f"{self.workers} worker{'s' if self.workers > 1 else ''} running, {seen}"
        waiting = (
            "no task waiting"
            if self.oldest_due is None
            else f"{self.due} task{'s' if self.due > 1 else ''} due, the oldest waiting "
            f"{_ago(self.now - self.oldest_due)}"
        )
        return f"{self.state.label}: {seen}; {waiting} (alert after {_ago(self.alert_after)})"


def worker_heartbeat(*, worker_id: str, started_at: datetime) -> None:
    """Record that this worker process is alive (its housekeeping, every round)."""
    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(
        worker_id=worker_id,
        defaults={
            "host": socket.gethostname()[:255],
            "pid": os.getpid(),
            "started_at": started_at,
            "seen_at": now,
        },
    )
    WorkerHeartbeat.objects.filter(seen_at__lt=now - HEARTBEAT_KEPT).delete()


def worker_health() -> WorkerHealth:
    """Whether workers are running and keeping up, in two statements."""
    now = timezone.now()
    alert_after = timedelta(seconds=settings.SHOP_WORKER_ALERT_SECONDS)
    seen = WorkerHeartbeat.objects.aggregate(
        last=Max("seen_at"), live=Count("pk", filter=Q(seen_at__gte=now - alert_after))
    )
    # Due since run_after if it has one (a retry's back-off, a scheduled run), else since it was
    # enqueued; the library marks "none" with a far-future date.
    waiting = DBTaskResult.objects.ready().aggregate(
        due=Count("pk"),
        oldest=Min(
            Case(When(run_after=get_date_max(), then=F("enqueued_at")), default=F("run_after"))
        ),
    )
    if not seen["live"]:
        state = WorkerState.NO_WORKER
    elif waiting["oldest"] is not None and now - waiting["oldest"] > alert_after:
        state = WorkerState.BEHIND
    else:
        state = WorkerState.OK
    return WorkerHealth(
        state=state,
        now=now,
        alert_after=alert_after,
        workers=seen["live"],
        last_seen=seen["last"],
        due=waiting["due"],
        oldest_due=waiting["oldest"],
    )


def worker_health_public() -> WorkerHealth:
    """`worker_health`, at most PUBLIC_HEALTH_SECONDS old (in the shared cache, with REDIS_URL)."""
    health: WorkerHealth | None = cache.get(PUBLIC_HEALTH_CACHE_KEY)
    if health is None:
        health = worker_health()
        cache.set(PUBLIC_HEALTH_CACHE_KEY, health, PUBLIC_HEALTH_SECONDS)
    return health


def _ago(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"
