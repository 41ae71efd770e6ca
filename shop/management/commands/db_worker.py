"""The shop's worker: django-tasks-db's own `db_worker`, plus housekeeping in a thread beside it.

Listed before django_tasks_db in INSTALLED_APPS, so `manage.py db_worker` is this command; every
option is the library's (`--help`).
"""

import functools
import os
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.autoreload import DJANGO_AUTORELOAD_ENV
from django_tasks_db.management.commands import db_worker

from shop.background.engine import tasks_recover_lost
from shop.background.health import worker_heartbeat
from shop.background.housekeeping import Job, housekeeping_run, housekeeping_start
from shop.notifications.services import notifications_resume
from shop.orders.tasks import payments_reconcile_schedule_ensure
from shop.payments.webhooks import webhook_deliveries_resume
from shop.refunds.services import refunds_resume


def recover_lost_tasks() -> list[str]:
    return tasks_recover_lost(lost_after=timedelta(seconds=settings.SHOP_TASK_LOST_AFTER_SECONDS))


# Lost tasks first: a scheduled run whose worker died goes on rather than being replaced.
HOUSEKEEPING: list[Job] = [
    recover_lost_tasks,
    webhook_deliveries_resume,
    notifications_resume,
    refunds_resume,
    payments_reconcile_schedule_ensure,
]


def housekeeping() -> None:
    housekeeping_run(HOUSEKEEPING)


class Command(db_worker.Command):
    help = (
        "Run the shop's background tasks (django-tasks-db's worker) and its housekeeping: "
        "the worker's heartbeat (/healthz/worker), "
        "tasks whose worker died are run again, queued webhook deliveries, queued emails and "
        "requested refunds without a task get one, "
        "reconcile_payments keeps its schedule (SHOP_RECONCILE_EVERY_MINUTES)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch"]:
            housekeeping()
        elif not options["reload"] or os.environ.get(DJANGO_AUTORELOAD_ENV) == "true":
            # Only in the process that runs tasks: with --reload, the parent only watches files.
            heartbeat = functools.partial(
                worker_heartbeat, worker_id=options["worker_id"], started_at=timezone.now()
            )
            housekeeping_start(
                [heartbeat, *HOUSEKEEPING], every_seconds=settings.SHOP_WORKER_HOUSEKEEPING_SECONDS
            )
        super().handle(*args, **options)
