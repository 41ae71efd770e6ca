"""The worker's side of webhooks processed in the worker: how fast one `manage.py db_worker`
applies queued deliveries, and how long a delivery waits to become a paid order."""

import json
import os
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from statistics import quantiles
from typing import Any

from bench.env import Request, Shop
from bench.load import rss_mib
from devtools.servers import db_worker, wait_until

PACED = 50  # deliveries sent one by one once the backlog is gone
PACE_SECONDS = 0.1


def worker_drains(shop: Shop, requests: Sequence[Request]) -> str:
    """What one worker (`manage.py db_worker`, as `make run` starts it) does with the queued
    deliveries: how fast it applies them, then the time from delivery to paid once it idles."""
    from django.db import connections
    from django.test import override_settings
    from django_tasks_db.models import DBTaskResult

    from shop.payments.models import WebhookDelivery
    from shop.payments.tasks import webhook_delivery_process_task

    def waiting() -> int:
        return WebhookDelivery.objects.filter(signature_valid=True, kind="").count()

    backlog = waiting()
    tasks = DBTaskResult.objects.filter(task_path=webhook_delivery_process_task.module_path)
    # The bench's settings and database (in this process's environment), one worker as
    # `make run` starts it (the library's default interval between looks: 1 s).
    env = {**os.environ, "SHOP_WEBHOOK_PROCESSING": "worker", "SHOP_RECONCILE_EVERY_MINUTES": "0"}
    log_dir = Path(os.environ["BENCH_STATIC_ROOT"]).parent  # the environment's work folder
    try:
        with db_worker("bench", env, log_dir, interval=1, startup_delay=True) as worker:
            wait_until(lambda: waiting() == 0, timeout=900)
            rate = _backlog_rate(tasks)
            rss = rss_mib([worker.pid])
            # Then, once the emails too are sent and the worker idles, deliveries one at a
            # time, as a shop that keeps up sees them.
            wait_until(lambda: not DBTaskResult.objects.filter(status="READY").exists(), 900)
            sessions = [shop.start_checkout(shop.cart(1))[1] for _ in range(PACED)]
            paced = [shop.paid(session_id) for session_id in sessions]
            with override_settings(SHOP_WEBHOOK_PROCESSING="worker"):
                for request in paced:
                    shop.expect(request, 202)
                    time.sleep(PACE_SECONDS)
            wait_until(lambda: waiting() == 0, timeout=120)
            waits = _delivery_to_paid(sessions)
            rss += rss_mib([worker.pid])
    finally:
        connections.close_all()
    cut = quantiles(waits, n=100)
    return (
        f"one worker applied the {backlog:,} queued deliveries at {rate:.0f} events/s (their "
        f"orders' emails queued behind them); then, with the worker idle (polling every second, "
        f"the library's default), {PACED} deliveries "
        f"{PACE_SECONDS * 1000:.0f} ms apart, delivery to paid took p50 {cut[49] * 1000:.0f} ms, "
        f"p99 {cut[98] * 1000:.0f} ms, at most {max(waits) * 1000:.0f} ms; the worker's memory "
        f"{' then '.join(f'{mib:.0f}' for mib in rss)} MiB"
    )


def _backlog_rate(tasks: Any) -> float:
    """Events applied per second, from the first task's start to the last one's end."""
    done = tasks.filter(status="SUCCESSFUL", finished_at__isnull=False)
    first = min(done.values_list("started_at", flat=True))
    last = max(done.values_list("finished_at", flat=True))
    return float(done.count() / max((last - first).total_seconds(), 1e-6))


def _delivery_to_paid(sessions: list[str]) -> list[float]:
    from shop.orders.models import Order
    from shop.payments.models import WebhookDelivery

    paid = dict(
        Order.objects.filter(checkout_session_id__in=sessions).values_list(
            "checkout_session_id", "paid_at"
        )
    )
    waits = []
    for delivery in WebhookDelivery.objects.filter(signature_valid=True).order_by("-id")[:PACED]:
        paid_at = paid[_session_of(delivery.body)]
        if paid_at is None:
            raise RuntimeError(f"delivery {delivery.pk} was applied, but its order is not paid")
        waits.append((paid_at - delivery.received_at) / timedelta(seconds=1))
    return waits


def _session_of(body: str) -> str:
    return str(json.loads(body)["data"]["object"]["id"])
