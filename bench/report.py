"""docs/benchmarks.md's tables, from each backend's results; what follows the marker is
written by hand (the method, the notes) and kept."""

import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.scenarios import TARGETS, Target

NOTES_MARKER = "<!-- notes: kept by bench.run -->"
BACKEND_NAMES = {"postgres": "PostgreSQL", "sqlite": "SQLite"}
Report = dict[str, Any]


def write(path: Path, markdown: str) -> None:
    old = path.read_text() if path.exists() else ""
    kept = old.split(NOTES_MARKER, 1)[1] if NOTES_MARKER in old else "\n"
    path.write_text(markdown + "\n" + NOTES_MARKER + kept)


def render(reports: list[Report], run: str) -> str:
    cpu = re.search(r"^model name\s*: (.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)  # noqa: S607
    settings = reports[0]["settings"].items() if reports else []
    out = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`.venv/bin/python -m bench.run`); how it measures, and what "
        "limits each figure, is written by hand below the tables.",
        "",
        "## Machine and run",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}",
        f"- CPU: {cpu.group(1) if cpu else 'unknown'}, {os.cpu_count()} cores (load generator, "
        f"app server and database share them); Linux {platform.release()}",
        f"- Python {platform.python_version()}, "
        + ", ".join(f"{p} {version(p)}" for p in ("django", "gunicorn", "psycopg", "stripe")),
        "- Databases: " + ", ".join(r["database"] for r in reports),
        f"- Load: {wrk.stdout.split(' Copyright')[0].strip()}; {run}",
        "- Settings: " + ", ".join(f"{k}={v}" for k, v in settings),
        "",
    ]
    for report in reports:
        out += _backend_table(report)
    out += _targets_table(reports)
    out += ["## Sanity checks", ""]
    for report in reports:
        out.append(f"- {BACKEND_NAMES[report['backend']]}:")
        out += [f"  - {check}" for check in report["checks"]]
        exhausted = [r["label"] for r in report["results"] if r["exhausted"]]
        out += [f"  - ran out of prepared requests: {', '.join(exhausted)}"] if exhausted else []
    return "\n".join(out) + "\n"


def _backend_table(report: Report) -> list[str]:
    rows = {row["key"]: row for row in report["results"]}
    floors = [row["floor_rps"] for row in report["results"]]
    loads = [row["loadavg"] for row in report["results"]]
    busy = max(loads) > (os.cpu_count() or 1) + 1  # wrk, workers and database alone: cores + 1
    lines = [
        f"## {BACKEND_NAMES[report['backend']]}",
        "",
        f"The floor alone: {rows['floor']['rps']:,.0f} req/s at the start, "
        f"{rows['floor_end']['rps']:,.0f} at the end; next to the scenarios it ranged from "
        f"{min(floors):,.0f} to {max(floors):,.0f} req/s. Load average (1 min) while it ran: "
        f"{min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} cores"
        + (
            " — other processes were competing for the CPU, so trust the ratios, and the CPU "
            "ratios most, over raw req/s."
            if busy
            else "."
        ),
        "",
        "| Scenario | req/s | floor req/s | x floor | CPU ms/req (app + DB) | x floor by CPU "
        "| p50 ms | p99 ms | SQL/req | Stripe calls/req | Unexpected | Worker RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['label']} | {r['rps']:,.0f} | {r['floor_rps']:,.0f} | {r['ratio']:.2f} "
            f"| {r['cpu_ms']:.1f} ({r['app_cpu_ms']:.1f} + {r['db_cpu_ms']:.1f}) "
            f"| {r['cpu_ratio']:.2f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['queries']} "
            f"| {r['stripe_calls']:g} | {r['unexpected']} "
            f"| {' / '.join(f'{m:.0f}' for m in r['worker_rss_mib'])} |"
        )
    return [*lines, ""]


def target_ratio(report: Report, target: Target, field: str) -> float | None:
    """The target's ratio on `field`: "ratio" (requests per second, what the targets are set
    on) or "cpu_ratio" (server CPU per request, which a busy machine hardly moves)."""
    rows = {row["key"]: row for row in report["results"]}
    if target.numerator not in rows or target.denominator not in rows:
        return None
    ratio: float = rows[target.numerator][field]
    if target.denominator != "floor":  # each over its own floor first, then one over the other
        base = rows[target.denominator][field]
        ratio = ratio / base if base else 0.0
    return ratio


def _targets_table(reports: list[Report]) -> list[str]:
    names = [BACKEND_NAMES[r["backend"]] for r in reports]
    lines = ["## Targets", "", "| Target | " + " | ".join(names) + " |"]
    lines.append("| --- | " + " | ".join("---" for _ in names) + " |")
    for target in TARGETS:
        cells = []
        for report in reports:
            ratio, cpu = (target_ratio(report, target, f) for f in ("ratio", "cpu_ratio"))
            cells.append(
                "n/a"
                if ratio is None or cpu is None
                else f"{_outcome(ratio, target.limit)}; by CPU {_outcome(cpu, target.limit)}"
            )
        lines.append(f"| {target.label} | " + " | ".join(cells) + " |")
    calls = [
        sum(r["stripe_calls_under_load"] for r in x["results"] if r["no_stripe"]) for x in reports
    ]
    cells = [f"{'PASS' if n == 0 else 'MISS'} ({n})" for n in calls]
    label = "No Stripe call while processing webhooks (calls seen)"
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _outcome(ratio: float, limit: float) -> str:
    return f"{'PASS' if ratio >= limit else 'MISS'} ({ratio:.2f})"
