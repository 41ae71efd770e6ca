"""Background tasks of orders: thin wrappers run by `manage.py db_worker`."""

from datetime import timedelta
from typing import Any

from django.conf import settings
from django_tasks import TaskContext, task

from shop.background.schedule import schedule_advance, schedule_ensure
from shop.orders.reconcile import payments_reconcile

RECONCILE_SCHEDULE = "payments_reconcile"


def reconcile_every() -> timedelta | None:
    minutes = settings.SHOP_RECONCILE_EVERY_MINUTES
    return timedelta(minutes=minutes) if minutes > 0 else None


@task(takes_context=True)
def payments_reconcile_scheduled(context: TaskContext) -> dict[str, Any]:
    """`reconcile_payments` on its schedule: one run at a time, however many workers."""
    if not schedule_advance(
        name=RECONCILE_SCHEDULE,
        task=payments_reconcile_scheduled,
        every=reconcile_every(),
        run_id=context.task_result.id,
    ):
        return {"skipped": True}
    report = payments_reconcile()
    return {
        "checked": report.checked,
        "changed": report.changes,
        "errors": report.errors,
    }


def payments_reconcile_schedule_ensure() -> str:
    return schedule_ensure(
        name=RECONCILE_SCHEDULE, task=payments_reconcile_scheduled, every=reconcile_every()
    )
