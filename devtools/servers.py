"""Real app-server processes (gunicorn) on the test database, for multi-process tests."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import requests
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER']}:{s['PASSWORD'] or ''}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def wait_for(url: str, timeout: float = 30) -> None:
    """Until `url` answers 200."""

    def up() -> bool:
        try:
            return requests.get(url, timeout=5).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            return False

    try:
        wait_until(up, timeout)
    except TimeoutError:
        raise RuntimeError(f"{url} did not come up") from None


def production_env(env: dict[str, str]) -> dict[str, str]:
    """The environment of a shop process (app server, worker) with production settings on the
    test database, plus `env`."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": test_database_url(),
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "app-server-test-secret-key-0123456789-abcdefghijklmnop",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        # A process without a Stripe key (env) runs demo payments, asked for as production needs.
        "SHOP_DEMO_PAYMENTS": "true",
        **env,
    }


@contextmanager
def app_servers(
    count: int, env: dict[str, str], log_dir: Path, *, workers: int = 2, threads: int = 4
) -> Iterator[list[str]]:
    """Start `count` gunicorn servers with production settings plus `env`."""
    full_env = production_env(env)
    ports = [free_port() for _ in range(count)]
    with ExitStack() as logs:
        servers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "config.wsgi",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    str(workers),
                    "--threads",
                    str(threads),
                    "--log-level",
                    "warning",
                ],
                env=full_env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=logs.enter_context(open(log_dir / f"gunicorn-{port}.log", "wb")),
            )
            for port in ports
        ]
        try:
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            for url in urls:
                wait_for(url + "/healthz")
            yield urls
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                server.wait(timeout=20)


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway Redis on loopback; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="shop-redis-")
    server = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def db_worker(
    worker_id: str,
    env: dict[str, str],
    log_dir: Path,
    *,
    interval: float = 0.1,
    startup_delay: bool = False,
) -> Iterator[subprocess.Popen[bytes]]:
    """One `manage.py db_worker` process with production settings plus `env`, its output in
    `log_dir`/worker-<id>.log; stopped (gracefully, then killed) on leaving."""
    command = [sys.executable, "manage.py", "db_worker", "--no-reload", "--interval", str(interval)]
    command += ["--worker-id", worker_id] + ([] if startup_delay else ["--no-startup-delay"])
    with open(log_dir / f"worker-{worker_id}.log", "ab") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=production_env({"PYTHONUNBUFFERED": "1", **env}),
            stdout=log,
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


def wait_until(condition: Callable[[], bool], timeout: float = 60, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(step)
