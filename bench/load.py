"""The load side: wrk replaying prepared requests, and what /proc says the servers spent."""

import json
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.env import Request

REPLAY_LUA = Path(__file__).with_name("replay.lua")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TCP_ESTABLISHED, TCP_CLOSE_WAIT = "01", "08"  # states in /proc/net/tcp


def write_requests(path: Path, requests: Iterable[Request]) -> Path:
    """Write requests in the format replay.lua reads."""
    with path.open("wb") as file:
        for r in requests:
            file.write(f"{r.method} {r.path} {len(r.body)} {len(r.headers)}\n".encode())
            file.write("".join(f"{k}: {v}\n" for k, v in r.headers.items()).encode())
            file.write(r.body)
    return path


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    latency_us: dict[int, float]  # microseconds -> share of the responses
    statuses: dict[str, int]
    errors: dict[str, int]
    exhausted: bool

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, percent: float) -> float:
        wanted, seen = sum(self.latency_us.values()) * percent / 100, 0.0
        for microseconds in sorted(self.latency_us):
            seen += self.latency_us[microseconds]
            if seen >= wanted:
                return microseconds / 1000
        return 0.0

    def unexpected(self, expected: int) -> int:
        """Responses with another status, plus socket errors and timeouts."""
        other = sum(n for status, n in self.statuses.items() if int(status) != expected)
        return other + sum(n for name, n in self.errors.items() if name != "status")

    @classmethod
    def merge(cls, parts: Sequence["LoadResult"]) -> "LoadResult":
        return cls(
            sum(p.requests for p in parts),
            sum(p.seconds for p in parts),
            _add(p.latency_us for p in parts),
            _add(p.statuses for p in parts),
            _add(p.errors for p in parts),
            any(p.exhausted for p in parts),
        )


def _add(counters: Iterable[dict[Any, Any]]) -> dict[Any, Any]:
    total: Counter[Any] = Counter()
    for counter in counters:
        total.update(counter)
    return dict(total)


def wrk(
    url: str, requests: Path, *, seconds: float, connections: int, once: bool, skip: int
) -> LoadResult:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout"]
    command += ["10s", "-s", str(REPLAY_LUA), url, "--", str(requests), str(skip)]
    command += ["once"] if once else []
    done = subprocess.run(  # noqa: S603 - wrk with arguments built here
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    match = re.search(r"^BENCHJSON (.*)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    out = json.loads(match.group(1))
    quantiles = out["latency_quantiles_us"]
    weight = out["requests"] / len(quantiles) if quantiles else 0.0
    return LoadResult(
        out["requests"],
        out["duration_us"] / 1e6,
        _add({us: weight} for us in quantiles),
        out["statuses"],
        out["errors"],
        out["exhausted"],
    )


def wait_idle(port: int, *, timeout: float = 30.0) -> None:
    """Wait until no request is being served: wrk stops without waiting for the answers it no
    longer needs, and the workers go on serving those (and calling Stripe for them). A sync
    worker keeps its connection until it has answered, even once wrk closed it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = _read("/proc/net/tcp").splitlines()[1:] + _read("/proc/net/tcp6").splitlines()[1:]
        if not any(
            int(f[1].rsplit(":", 1)[1], 16) == port and f[3] in (TCP_ESTABLISHED, TCP_CLOSE_WAIT)
            for f in (line.split() for line in lines)
        ):
            return
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _read(str(stat)).rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(stat.parent.name))
    return sorted(found)


def postgres_pids() -> list[int]:
    """The PostgreSQL server this process started (devtools.pgcluster), with its children,
    which serve the connections; none for SQLite, which runs inside the workers."""
    for pid in children(os.getpid()):
        if _read(f"/proc/{pid}/comm").strip() == "postgres":
            return [pid, *children(pid)]
    return []


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU time of these processes so far (0 for one that is gone)."""
    ticks = 0
    for pid in pids:
        fields = _read(f"/proc/{pid}/stat").rsplit(")", 1)[-1].split()
        ticks += int(fields[11]) + int(fields[12]) if len(fields) > 12 else 0
    return ticks / CLOCK_TICKS


def rss_mib(pids: Iterable[int]) -> list[float]:
    found = (re.search(r"^VmRSS:\s+(\d+) kB", _read(f"/proc/{p}/status"), re.M) for p in pids)
    return [int(match.group(1)) / 1024 for match in found if match]


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""
