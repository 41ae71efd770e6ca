"""A worker's housekeeping: small jobs that keep background work whole, run in a thread beside
the worker's loop. Each job is safe to run in several workers at once."""

import logging
import threading
import time
from collections.abc import Callable, Sequence

from django.db import close_old_connections

logger = logging.getLogger(__name__)

Job = Callable[[], object]


def housekeeping_run(jobs: Sequence[Job]) -> None:
    """Run each job once; one failing job neither stops the others nor the worker."""
    for job in jobs:
        try:
            job()
        except Exception:
            logger.exception("housekeeping job %s failed", getattr(job, "__name__", job))


def housekeeping_start(jobs: Sequence[Job], *, every_seconds: float) -> threading.Thread:
    """Run the jobs now and then every `every_seconds`, in a daemon thread of this process."""

    def loop() -> None:
        while True:
            close_old_connections()
            housekeeping_run(jobs)
            close_old_connections()
            time.sleep(every_seconds)

    thread = threading.Thread(target=loop, name="shop-housekeeping", daemon=True)
    thread.start()
    return thread
