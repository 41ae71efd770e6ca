"""What the shop needs from the task engine's own rows (django-tasks-db), beyond its API.

django-tasks-db marks a task RUNNING when a worker takes it and leaves it so if that worker dies
mid-task (killed, out of memory, machine gone): nothing ever runs it again (the open issue
RealOrangeOne/django-tasks-db#5). Its maintainer's remedy is a grace period after which such a
task is taken up again; `tasks_recover_lost` is that remedy, run by every worker's housekeeping.
Every task of the shop is written to be safe to run twice.
"""

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from django.db import router, transaction
from django.db.models import QuerySet
from django.db.models.signals import pre_save
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks.base import Task
from django_tasks_db.backend import DatabaseBackend
from django_tasks_db.compat import normalize_json, task_enqueued
from django_tasks_db.models import DBTaskResult

logger = logging.getLogger(__name__)

LIVE = (TaskResultStatus.READY, TaskResultStatus.RUNNING)


def tasks_recover_lost(*, lost_after: timedelta) -> list[str]:
    """Make tasks running for longer than `lost_after` ready again; their ids."""
    cutoff = timezone.now() - lost_after
    lost = DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING, started_at__lt=cutoff)
    recovered = []
    for task_id, task_path, worker_ids in lost.values_list("id", "task_path", "worker_ids")[:100]:
        # Compare-and-set: of several workers' housekeeping, exactly one moves it. The row keeps
        # its id and arguments; the worker that takes it adds itself to worker_ids.
        if DBTaskResult.objects.filter(
            pk=task_id, status=TaskResultStatus.RUNNING, started_at__lt=cutoff
        ).update(status=TaskResultStatus.READY):
            recovered.append(str(task_id))
            logger.warning(
                "task %s (%s) lost its worker %s: ready to run again",
                task_id,
                task_path,
                worker_ids[-1] if worker_ids else "?",
            )
    return recovered


def task_live_kwargs(task: Task[Any, Any]) -> list[dict[str, Any]]:
    """The keyword arguments of this task's runs that are waiting or running."""
    return [
        args_kwargs["kwargs"]
        for args_kwargs in DBTaskResult.objects.filter(
            task_path=task.module_path, status__in=LIVE
        ).values_list("args_kwargs", flat=True)
    ]


def tasks_resume(
    task: Task[Any, Any],
    *,
    key: str,
    waiting: QuerySet[Any],
    enqueue: Callable[[Any], object],
    label: str,
    limit: int = 100,
) -> list[Any]:
    """Give a run of `task` again to each row of `waiting` (the rows that should have one) whose
    id no waiting or running run carries as its keyword `key`; their ids (housekeeping).

    The rows are read before the runs: a row and its run are committed together, so a row
    written meanwhile is read with its run, not taken for one without. Each row is locked, then
    checked again, before `enqueue(id)` writes its run in the same transaction: a run finishing
    now commits what it changed (or its own next run) before this reads it, and of two workers'
    housekeeping only one gives the row a run.
    """

    def live() -> set[Any]:
        return {kwargs.get(key) for kwargs in task_live_kwargs(task)}

    rows = list(waiting.values_list("pk", flat=True))
    seen = live()
    resumed = []
    for pk in [pk for pk in rows if pk not in seen][:limit]:
        with transaction.atomic():
            if not waiting.select_for_update().filter(pk=pk).exists() or pk in live():
                continue
            enqueue(pk)
        resumed.append(pk)
        logger.warning("%s %s had no task waiting: given a new one", label, pk)
    return resumed


def task_is_live(task_id: str) -> bool:
    """Whether the run `task_id` is waiting or running (not finished, not unknown)."""
    return bool(task_id) and DBTaskResult.objects.filter(pk=task_id, status__in=LIVE).exists()


def tasks_enqueue_many(task: Task[Any, Any], calls: Sequence[dict[str, Any]]) -> None:
    """Enqueue one run of `task` per keyword arguments in `calls`, in one INSERT.

    What the backend's own `enqueue` does for one run (django_tasks_db's
    `DatabaseBackend._task_to_db_task`: the same row, the same `task_enqueued` signal), for
    several: a payment owes two emails, and one statement less is a tenth of its webhook.
    In the caller's transaction, like `enqueue`.
    """
    backend = task.get_backend()
    if len(calls) < 2 or not isinstance(backend, DatabaseBackend):
        # One run, or another engine: the engine's own enqueue.
        for kwargs in calls:
            task.enqueue(**kwargs)
        return
    rows = [task_row(task, kwargs) for kwargs in calls]
    DBTaskResult.objects.bulk_create(rows)
    for row in rows:
        task_enqueued.send(type(backend), task_result=row.task_result)


def task_row(task: Task[Any, Any], kwargs: dict[str, Any]) -> DBTaskResult:
    """The unsaved row the database backend's `enqueue` writes for one run of `task` (see
    `tasks_enqueue_many`), for callers that write it in a statement of their own."""
    backend = task.get_backend()
    if not isinstance(backend, DatabaseBackend):
        raise TypeError(f"{task.module_path} does not run on the database backend")
    backend.validate_task(task)
    row = DBTaskResult(
        id=task_new_id(task),
        args_kwargs=normalize_json({"args": [], "kwargs": kwargs}),
        priority=task.priority,
        task_path=task.module_path,
        queue_name=task.queue_name,
        run_after=task.run_after,
        backend_name=backend.alias,
    )
    # What save() would run first; an INSERT of our own does not (the library fills in
    # run_after).
    pre_save.send(
        sender=DBTaskResult,
        instance=row,
        raw=False,
        using=router.db_for_write(DBTaskResult),
        update_fields=None,
    )
    return row


def task_new_id(task: Task[Any, Any]) -> Any:
    """An id for a new run of `task`, made as the backend makes them."""
    backend = task.get_backend()
    assert isinstance(backend, DatabaseBackend)
    return backend._get_id()
