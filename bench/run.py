"""`make bench`: serve the shop with gunicorn on PostgreSQL and on SQLite, load it with wrk,
and report every figure against a bare Django view served the same way (the floor).

    .venv/bin/python -m bench.run [--seconds 6] [--warmup 2] [--backends postgres,sqlite]

Writes docs/benchmarks.md and prints the same tables. Targets are reported, never asserted.
"""

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.load import PROJECT, postgres_version, require_wrk, wrk_version

RATE_NEVER_REACHED = "100000000/m"
# Everything after this line in docs/benchmarks.md is written by people and kept on each run.
NOTES_MARKER = "<!-- notes: kept by bench.run -->"
BACKEND_NAMES = {"postgres": "PostgreSQL", "sqlite": "SQLite"}


@dataclass(frozen=True)
class Target:
    label: str
    limit: float
    numerator: str
    denominator: str  # "floor" or another scenario's key
    kind: str = "at_least"  # ratio >= limit; "within": |ratio - 1| <= limit


TARGETS = [
    Target("Storefront, first-time visitor ≥ 0.5 x floor", 0.5, "storefront_first", "floor"),
    # One-sided: being faster than the comparison is noise, not a miss.
    Target(
        "1,000-order browser within 15% of a browser with none (≥ 0.85 of its rate)",
        0.85,
        "storefront_1000",
        "storefront_empty",
    ),
    Target(
        "1,000-order browser flat with 100,000 other orders (≥ 0.85 of its rate without)",
        0.85,
        "storefront_1000_100k",
        "storefront_1000",
    ),
    Target("Webhook, distinct orders ≥ 0.25 x floor", 0.25, "webhook_distinct", "floor"),
    Target("Webhook, duplicate ≥ 0.4 x floor", 0.4, "webhook_duplicate", "floor"),
    Target(
        "Webhook, distinct orders, +100k orders and events ≥ 0.25 x floor",
        0.25,
        "webhook_distinct_100k",
        "floor",
    ),
    Target(
        "Webhook, duplicate, +100k orders and events ≥ 0.4 x floor",
        0.4,
        "webhook_duplicate_100k",
        "floor",
    ),
    Target(
        "Checkout creation (new browser, new session) ≥ 0.1 x floor",
        0.1,
        "checkout_new_browser",
        "floor",
    ),
    Target(
        "Checkout creation (switching carts: expire + create) ≥ 0.1 x floor",
        0.1,
        "checkout_alternating",
        "floor",
    ),
]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=4.0,
        help="timed load per scenario, split into --rounds runs",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="runs per scenario, each right after a run of the floor",
    )
    parser.add_argument(
        "--floor-seconds", type=float, default=1.0, help="the floor run before each round"
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="wrk warm-up per scenario")
    parser.add_argument("--connections", type=int, default=4, help="wrk connections")
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--pg-bin", default="/usr/lib/postgresql/15/bin")
    parser.add_argument("--output", type=Path, default=PROJECT / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    require_wrk()

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if "postgres" in backends and not os.access(f"{args.pg_bin}/initdb", os.X_OK):
        print(f"*** SKIPPED PostgreSQL: no {args.pg_bin}/initdb ***", file=sys.stderr)
        backends.remove("postgres")

    reports = []
    with tempfile.TemporaryDirectory(prefix="shop-bench-") as tmp:
        env = _server_env(Path(tmp) / "static")
        _collectstatic(env)
        for backend in backends:
            out = Path(tmp) / f"{backend}.json"
            command = [
                sys.executable,
                "-m",
                "bench.backend",
                backend,
                str(out),
                "--seconds",
                str(args.seconds),
                "--warmup",
                str(args.warmup),
                "--rounds",
                str(args.rounds),
                "--floor-seconds",
                str(args.floor_seconds),
                "--connections",
                str(args.connections),
                "--pg-bin",
                args.pg_bin,
            ]
            subprocess.run(command, cwd=PROJECT, env=env, check=True)  # noqa: S603
            reports.append(json.loads(out.read_text()))

    markdown = render(reports, machine=_machine(args.pg_bin), args=args)
    print(markdown)
    if not args.no_write:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        old = args.output.read_text() if args.output.exists() else ""
        if NOTES_MARKER in old:
            markdown += "\n" + NOTES_MARKER + old.split(NOTES_MARKER, 1)[1]
        args.output.write_text(markdown)
        print(f"wrote {args.output.relative_to(PROJECT)}", file=sys.stderr)
    return 0


def _server_env(static_root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="bench.settings",
        DJANGO_DEBUG="false",
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        BENCH_STATIC_ROOT=str(static_root),
        # Set, even empty, so a developer's .env cannot switch these on for the bench.
        REDIS_URL="",
        STRIPE_WEBHOOK_ALLOWED_IPS="",
        # All load comes from one address and a few browsers: limits high enough never to
        # block, so the limiter's counting is still measured but the checkout work is too.
        CHECKOUT_RATE_PER_IP=RATE_NEVER_REACHED,
        CHECKOUT_RATE_PER_BROWSER=RATE_NEVER_REACHED,
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def _collectstatic(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=PROJECT,
        env=env,
        check=True,
    )


def _machine(pg_bin: str) -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "django": version("django"),
        "gunicorn": version("gunicorn"),
        "psycopg": version("psycopg"),
        "stripe": version("stripe"),
        "postgres_binary": postgres_version(pg_bin) if os.path.exists(pg_bin) else "not installed",
        "wrk": wrk_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# -- the report ------------------------------------------------------------------------------


def target_outcome(
    report: dict[str, Any], target: Target, field: str = "ratio"
) -> tuple[str, float | None]:
    """PASS or MISS on `field`: "ratio" (requests per second, what the targets are set on) or
    "cpu_ratio" (server CPU per request, the cross-check that a busy machine hardly moves)."""
    rows = _rows(report)
    if target.numerator not in rows:
        return "n/a", None
    ratio = rows[target.numerator][field]
    if target.denominator != "floor":
        # Each scenario over its own floor first, so a busier machine in one of them cancels.
        base = rows[target.denominator][field]
        ratio = ratio / base if base else 0.0
    ok = abs(ratio - 1) <= target.limit if target.kind == "within" else ratio >= target.limit
    return ("PASS" if ok else "MISS"), ratio


def render(reports: list[dict[str, Any]], *, machine: dict[str, str], args: Any) -> str:
    out = [
        "# Benchmarks",
        "",
        "How fast the shop serves each kind of request, as a ratio to the floor: a bare Django "
        "view returning a constant response through the same middleware, server and settings, "
        "measured in the same run. Ratios cancel out most of the machine; raw requests per "
        "second do not, so compare ratios between machines.",
        "",
        "Reproduce with `make bench` (which runs `.venv/bin/python -m bench.run`; "
        "`--help` lists the options). It takes about five minutes.",
        "",
        "## Machine and versions",
        "",
        f"- Date: {machine['date']}",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores (load generator, app server and "
        f"database share them); Linux {machine['kernel']}",
        f"- Python {machine['python']}, Django {machine['django']}, gunicorn "
        f"{machine['gunicorn']}, psycopg {machine['psycopg']}, stripe {machine['stripe']}",
        "- Databases: " + ", ".join(r["database_version"] for r in reports),
        f"- Load: {machine['wrk']}",
        "",
        "## Method",
        "",
        f"- gunicorn, {reports[0]['workers'] if reports else 2} sync workers, on 127.0.0.1, "
        "production settings (`DJANGO_DEBUG=false`, `DJANGO_SECURE_SSL_REDIRECT=false`, a random "
        "secret key, whitenoise manifest storage over a temporary `collectstatic`), plus "
        "`bench/urls.py` adding `/bench/floor`. Settings: "
        + (", ".join(f"{k}={v}" for k, v in reports[0]["settings"].items()) if reports else "")
        + ".",
        f"- wrk, 1 thread, {args.connections} connections. Each scenario: a {args.warmup:g} s "
        f"warm-up, then {args.rounds} rounds of {args.floor_seconds:g} s of the floor followed by "
        f"{args.seconds / args.rounds:g} s of the scenario; *x floor* divides the scenario's "
        "requests per second by those of its own floor runs, so both saw the same machine "
        "(other processes on a shared box come and go). p50/p99 come from wrk's latency "
        "distributions of the scenario's rounds, merged.",
        "- *CPU ms/req*: user + system CPU time during the timed runs, from /proc, per answered "
        "request: the gunicorn workers (*app*, which includes SQLite and the Stripe SDK) plus, "
        "on PostgreSQL, the postmaster and all its processes (*DB*, background ones included); "
        "*x floor by CPU* is the floor's CPU per request over the scenario's. CPU time barely "
        "changes when other processes compete for the cores, so it is the steadier measure on "
        "a shared machine; it leaves out wrk and the fake Stripe. Requests still in flight "
        "when wrk stops add a little CPU but no answered request, so slow scenarios read a few "
        "per cent high.",
        "- PostgreSQL: a throwaway cluster (`devtools.pgcluster`: fsync off, as in the test "
        "suite); SQLite: a temporary file with the settings' WAL mode.",
        "- Checkout's rate limits (`CHECKOUT_RATE_PER_IP`, `CHECKOUT_RATE_PER_BROWSER`) are set "
        f"to {RATE_NEVER_REACHED}: all load comes from one address, so the limiter still counts "
        "every request but never refuses one.",
        "- Data: 3 products (the migration's); a browser with 1,000 paid orders of two lines; "
        "for the +100k rows, 100,000 paid orders of 20,000 other browsers and 100,000 past "
        "webhook events (one in fifty a refund), inserted with INSERT ... SELECT and, on "
        "PostgreSQL, followed by ANALYZE as autovacuum would.",
        "- Stripe: the fake server of `devtools/fakestripe/`, in the bench process, answering at "
        "once.",
        "- *SQL/req* and *Stripe calls/req*: the SQL statements and fake-Stripe requests of "
        "one request through the full middleware stack, counted in process with the test "
        "client and `CaptureQueriesContext` against the same database (the second of two "
        "requests of the scenario, so a first-request session is not counted).",
        "- *Unexpected*: responses with another status than the one expected (200; 303 for "
        "checkout) plus socket errors and timeouts. *RSS*: each gunicorn worker's VmRSS after "
        "the run.",
        "- Checkout was measured three ways: the same browser posting the same cart (the shop "
        "hands back the open session, no Stripe call), a new browser on every request (new "
        "session row, new order, one Stripe create), and 64 browsers each switching between two "
        "carts (release the old order, expire its session at Stripe, create a new one). The "
        "target applies to the two that create a session.",
        "- Webhooks: `checkout.session.completed` for pending orders pre-created in bulk, "
        "bodies pre-signed and sent once each in order (no event repeats); then one already "
        "processed event sent over and over.",
        "",
    ]
    for report in reports:
        out += _backend_table(report)
    out += _targets_table(reports)
    out += _checks(reports)
    return "\n".join(out) + "\n"


def _backend_table(report: dict[str, Any]) -> list[str]:
    rows = _rows(report)
    floors = [row["floor_rps"] for row in report["results"]]
    loads = [row["loadavg"] for row in report["results"]]
    lines = [
        f"## {BACKEND_NAMES[report['backend']]}",
        "",
        f"The floor alone: {rows['floor']['rps']:,.0f} req/s at the start, "
        f"{rows['floor_end']['rps']:,.0f} at the end; next to the scenarios it ranged from "
        f"{min(floors):,.0f} to {max(floors):,.0f} req/s. Load average (1 min) while it ran: "
        f"{min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} cores"
        # wrk, two workers and the database alone keep about one more runnable than cores.
        + (
            " — other processes were competing for the CPU, so trust the ratios, and the CPU "
            "ratios most, over raw req/s."
            if max(loads) > (os.cpu_count() or 1) + 1
            else "."
        ),
        "",
        "| Scenario | req/s | floor req/s | x floor | CPU ms/req (app + DB) | x floor by CPU "
        "| p50 ms "
        "| p99 ms | SQL/req | Stripe calls/req | Unexpected | Worker RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in report["results"]:
        lines.append(
            f"| {row['label']} | {row['rps']:,.0f} | {row['floor_rps']:,.0f} | {row['ratio']:.2f} "
            f"| {row['cpu_ms']:.1f} ({row['app_cpu_ms']:.1f} + {row['db_cpu_ms']:.1f}) "
            f"| {row['cpu_ratio']:.2f} "
            f"| {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['queries']} "
            f"| {row['stripe_calls_per_request']:g} | {row['unexpected']} "
            f"| {' / '.join(f'{r:.0f}' for r in row['worker_rss_mib'])} |"
        )
    lines.append("")
    return lines


def _targets_table(reports: list[dict[str, Any]]) -> list[str]:
    names = [BACKEND_NAMES[r["backend"]] for r in reports]
    lines = [
        "## Targets",
        "",
        "| Target | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for target in TARGETS:
        cells = []
        for report in reports:
            outcome, ratio = target_outcome(report, target)
            cpu_outcome, cpu_ratio = target_outcome(report, target, "cpu_ratio")
            cells.append(
                f"{outcome} ({ratio:.2f}); by CPU {cpu_outcome} ({cpu_ratio:.2f})"
                if ratio is not None and cpu_ratio is not None
                else outcome
            )
        lines.append(f"| {target.label} | " + " | ".join(cells) + " |")
    cells = []
    for report in reports:
        calls = report["checks"].get("webhook_stripe_calls")
        cells.append(f"{'PASS' if calls == 0 else 'MISS'} ({calls})")
    lines.append(
        "| No Stripe call while processing webhooks (calls seen) | " + " | ".join(cells) + " |"
    )
    lines += [
        "",
        "Ratios: each scenario's requests per second over those of the floor runs "
        "interleaved with it (the targets' measure); *by CPU*: the floor's server CPU per "
        "request over the scenario's. The two storefront comparisons divide one such "
        "ratio by the other.",
        "",
    ]
    return lines


def _checks(reports: list[dict[str, Any]]) -> list[str]:
    lines = ["## Sanity checks", ""]
    for report in reports:
        checks = report["checks"]
        exhausted = [r["key"] for r in report["results"] if r["exhausted"]]
        runs = [
            f"{checks[f'webhook_distinct{s}_orders_paid']:,} orders paid for "
            f"{checks[f'webhook_distinct{s}_requests']:,} answered deliveries with "
            f"{checks[f'webhook_distinct{s}_duplicates_seen']} seen as duplicates"
            for s in ("", "_100k")
            if f"webhook_distinct{s}_requests" in checks
        ]
        lines.append(
            f"- {BACKEND_NAMES[report['backend']]}: distinct-webhook runs: {'; '.join(runs)} "
            "(the server also serves the few deliveries in flight when wrk stops); "
            f"100,000 orders and events inserted in {checks['bulk_insert_seconds']} s"
            + (f"; ran out of prepared requests: {', '.join(exhausted)}" if exhausted else "")
            + "."
        )
    lines.append("")
    return lines


def _rows(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["key"]: row for row in report["results"]}


if __name__ == "__main__":
    sys.exit(main())
