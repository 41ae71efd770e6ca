"""Real `manage.py db_worker` processes on the test database, for tests that kill or race them."""

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devtools.servers import ROOT, production_env


def worker_env(**env: str) -> dict[str, str]:
    """Production settings on the test database, as the app servers get (devtools.servers)."""
    return production_env({"PYTHONUNBUFFERED": "1", **env})


@contextmanager
def db_worker(worker_id: str, env: dict[str, str], log_dir: Path) -> Iterator[subprocess.Popen]:
    """One `manage.py db_worker` process; stopped (gracefully, then killed) on leaving."""
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "db_worker",
            "--no-reload",
            "--no-startup-delay",
            "--interval",
            "0.1",
            "--worker-id",
            worker_id,
        ],
        cwd=ROOT,
        env=worker_env(**env),
        stdout=open(log_dir / f"worker-{worker_id}.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def wait_until(condition, timeout: float = 60, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(step)


def worker_log(log_dir: Path, worker_id: str) -> str:
    return (log_dir / f"worker-{worker_id}.log").read_text(errors="replace")
