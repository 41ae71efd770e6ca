from django.db import models


class Schedule(models.Model):
    """A job that runs again and again, and the one task run that carries it next.

    One row per job: every run and every worker's housekeeping lock it before changing the
    chain, so however many workers on however many machines, the job has one chain of runs.
    """

    name = models.CharField(max_length=100, unique=True)
    # The task run (django-tasks-db's id) that is the job's next run; empty when it is off.
    task_id = models.CharField(max_length=64, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name


class WorkerHeartbeat(models.Model):
    """A worker process that is alive: its housekeeping thread writes `seen_at` on every round
    (`shop.background.health`). Read to tell whether background work is being done at all."""

    worker_id = models.CharField(max_length=64, unique=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.worker_id} ({self.host}, pid {self.pid})"
