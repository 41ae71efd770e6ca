"""What a real `manage.py db_worker` (devtools.servers.db_worker) wrote, for tests that kill or
race them."""

from pathlib import Path


def worker_log(log_dir: Path, worker_id: str) -> str:
    return (log_dir / f"worker-{worker_id}.log").read_text(errors="replace")
