"""Jobs that run every so often, kept to exactly one chain of runs with django-tasks' run_after.

Each run of a job first locks the job's Schedule row, checks that it is the run the row names
(a stray copy is skipped), and enqueues its successor `every` later in the same transaction;
only then does its work. Every worker's housekeeping checks that the named run is still waiting
or running and starts a new chain if it is not (first start, a run that failed before it could
enqueue its successor). A run whose worker died is made ready again by the lost-task recovery
(shop.background.engine) and, if it had not yet enqueued its successor, goes on as the chain.
"""

import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django_tasks.base import Task

from shop.background.engine import task_is_live
from shop.background.models import Schedule

logger = logging.getLogger(__name__)


def schedule_ensure(*, name: str, task: Task[Any, Any], every: timedelta | None) -> str:
    """Give job `name` a next run unless it has one waiting or running (or is off); its id."""
    if every is None:
        return ""
    with transaction.atomic():
        schedule = _schedule_locked(name)
        if task_is_live(schedule.task_id):
            return schedule.task_id
        run = task.enqueue()
        Schedule.objects.filter(pk=schedule.pk).update(task_id=run.id)
    logger.info("schedule %s: started, first run %s", name, run.id)
    return run.id


def schedule_advance(
    *, name: str, task: Task[Any, Any], every: timedelta | None, run_id: str
) -> bool:
    """For run `run_id` of job `name`, as it starts: True if it is the job's scheduled run (its
    successor is then enqueued `every` later), False if it must do nothing."""
    with transaction.atomic():
        schedule = _schedule_locked(name)
        if schedule.task_id != run_id:
            logger.warning(
                "schedule %s: run %s is not the scheduled run (%s): skipped",
                name,
                run_id,
                schedule.task_id or "none, the job is off",
            )
            return False
        successor = task.using(run_after=timezone.now() + every).enqueue() if every else None
        Schedule.objects.filter(pk=schedule.pk).update(task_id=successor.id if successor else "")
    if successor is None:
        logger.info("schedule %s: switched off, run %s ends the chain", name, run_id)
        return False
    return True


def _schedule_locked(name: str) -> Schedule:
    # ON CONFLICT DO NOTHING, then locked: the first worker to get here creates the row.
    Schedule.objects.bulk_create([Schedule(name=name)], ignore_conflicts=True)
    return Schedule.objects.select_for_update().get(name=name)
