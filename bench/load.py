"""The load side: a gunicorn server, wrk runs over request files, and a small HTTP client."""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

REPLAY_LUA = Path(__file__).with_name("replay.lua")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TCP_ESTABLISHED, TCP_CLOSE_WAIT = "01", "08"  # states in /proc/net/tcp
PROJECT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def write_requests(path: Path, requests: Iterable[Request]) -> int:
    """Write requests in the format replay.lua reads; return how many."""
    count = 0
    with path.open("wb") as file:
        for request in requests:
            file.write(
                f"{request.method} {request.path} {len(request.body)} "
                f"{len(request.headers)}\n".encode()
            )
            for name, value in request.headers.items():
                file.write(f"{name}: {value}\n".encode())
            file.write(request.body)
            count += 1
    return count


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    # Latency distribution: microseconds -> share of the responses (from wrk's quantiles).
    latency_us: dict[int, float]
    statuses: dict[str, int]
    errors: dict[str, int]
    exhausted: bool

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, percent: float) -> float:
        total = sum(self.latency_us.values())
        if not total:
            return 0.0
        wanted, seen = total * percent / 100, 0
        for microseconds in sorted(self.latency_us):
            seen += self.latency_us[microseconds]
            if seen >= wanted:
                return microseconds / 1000
        return max(self.latency_us) / 1000

    def unexpected(self, expected: set[int]) -> int:
        """Responses with another status, plus socket errors and timeouts."""
        other = sum(n for status, n in self.statuses.items() if int(status) not in expected)
        return other + sum(n for name, n in self.errors.items() if name != "status")

    @classmethod
    def merge(cls, parts: Sequence["LoadResult"]) -> "LoadResult":
        return cls(
            requests=sum(p.requests for p in parts),
            seconds=sum(p.seconds for p in parts),
            latency_us=_add(p.latency_us for p in parts),
            statuses=_add(p.statuses for p in parts),
            errors=_add(p.errors for p in parts),
            exhausted=any(p.exhausted for p in parts),
        )


def _add(counters: Iterable[dict[Any, Any]]) -> dict[Any, Any]:
    total: Counter[Any] = Counter()
    for counter in counters:
        total.update(counter)
    return dict(total)


def wrk(
    url: str,
    request_file: Path,
    *,
    seconds: float,
    connections: int,
    once: bool = False,
    skip: int = 0,
) -> LoadResult:
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(REPLAY_LUA),
        url,
        "--",
        str(request_file),
        "1",
        "once" if once else "cycle",
        str(skip),
    ]
    done = subprocess.run(  # noqa: S603 - wrk with arguments built here
        command,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    match = re.search(r"^BENCHJSON (.*)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(match.group(1))
    quantiles = data["latency_quantiles_us"]
    weight = data["requests"] / len(quantiles) if quantiles else 0.0
    return LoadResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        latency_us=_add({us: weight} for us in quantiles),
        statuses=data["statuses"],
        errors=data["errors"],
        exhausted=data["exhausted"],
    )


def wrk_version() -> str:
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)  # noqa: S607
    return (done.stdout or done.stderr).split(" Copyright")[0].strip()


@dataclass(frozen=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def cookies(self) -> dict[str, str]:
        jar: SimpleCookie = SimpleCookie()
        for name, value in self.headers:
            if name.lower() == "set-cookie":
                jar.load(value)
        return {name: morsel.value for name, morsel in jar.items()}


def fetch(port: int, request: Request) -> Response:
    """One request without following redirects or keeping cookies, like wrk."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            request.method, request.path, body=request.body or None, headers=request.headers
        )
        response = conn.getresponse()
        return Response(response.status, response.getheaders(), response.read())
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gunicorn:
    """The shop under gunicorn on a loopback port, with the workers' memory readable."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log
        self.url = f"http://127.0.0.1:{port}"

    def worker_pids(self) -> list[int]:
        pid = self.process.pid
        if Path(f"/proc/{pid}/task/{pid}/children").exists():
            return sorted(children(pid))
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                pids.append(int(stat.parent.name))
        return sorted(pids)

    def worker_rss_mib(self) -> list[float]:
        sizes = []
        for pid in self.worker_pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
            if match:
                sizes.append(int(match.group(1)) / 1024)
        return sizes

    def wait_idle(self, *, timeout: float = 30.0) -> None:
        """Wait until no request is being served: wrk stops without waiting for the answers it
        no longer needs, and the workers go on serving those (and calling Stripe for them)."""
        deadline = time.monotonic() + timeout
        while self._open_connections() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _open_connections(self) -> int:
        """Accepted connections to the server's port, including those wrk already closed
        (CLOSE_WAIT): a sync worker keeps its connection until it has answered."""
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                port = int(fields[1].rsplit(":", 1)[1], 16)
                if port == self.port and fields[3] in (TCP_ESTABLISHED, TCP_CLOSE_WAIT):
                    count += 1
        return count

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def cpu_ticks(pid: int) -> int:
    """User plus system CPU time of a process so far, in clock ticks (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except OSError:
        return []


def postgres_pids() -> list[int]:
    """The PostgreSQL server this process started (devtools.pgcluster): the postmaster, a child
    of this process, and its children, which serve the connections."""
    for pid in children(os.getpid()):
        if Path(f"/proc/{pid}/comm").read_text().strip() == "postgres":
            return [pid, *children(pid)]
    return []


def cpu_seconds(pids: Iterable[int]) -> float:
    return sum(cpu_ticks(pid) for pid in pids) / CLOCK_TICKS


@contextmanager
def gunicorn(*, workers: int, env: dict[str, str], log: Path) -> Iterator[Gunicorn]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "config.wsgi:application",
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
    ]
    with log.open("wb") as log_file:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command,
            cwd=PROJECT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = Gunicorn(process, port, log)
    try:
        _wait_until_up(server, workers)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(server: Gunicorn, workers: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError("gunicorn exited:\n" + server.log_tail())
        try:
            if (
                fetch(server.port, Request("GET", "/healthz")).status == 200
                and len(server.worker_pids()) >= workers
            ):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer /healthz within 60 s:\n" + server.log_tail())


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")


def postgres_version(bin_dir: str) -> str:
    postgres = os.path.join(bin_dir, "postgres")
    done = subprocess.run([postgres, "--version"], capture_output=True, text=True, check=False)  # noqa: S603
    return done.stdout.strip()
