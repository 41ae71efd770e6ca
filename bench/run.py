"""`make bench`: serve the shop with gunicorn on PostgreSQL and on SQLite, load each scenario of
`bench.scenarios` with wrk, and report it against a bare Django view served the same way.

    .venv/bin/python -m bench.run [--seconds 4] [--warmup 1] [--backends postgres,sqlite]
                                  [--scenarios KEY,...] [--no-write]

Writes the tables of docs/benchmarks.md and prints them; the hand-written method and notes
after its marker are kept. Targets are reported, never asserted.
"""

import argparse
import math
import multiprocessing
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import load, report
from bench.env import PROJECT, Environment, Server
from bench.scenarios import FLOOR, SCENARIOS, Scenario

WORKERS = 2
# A once scenario's warm-up: enough distinct requests to measure its rate for the timed runs.
CALIBRATION_REQUESTS = 300


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="timed load per scenario")
    parser.add_argument("--rounds", type=int, default=2, help="each right after a floor run")
    parser.add_argument("--floor-seconds", type=float, default=1.0, help="floor run per round")
    parser.add_argument("--warmup", type=float, default=1.0, help="wrk warm-up per scenario")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--scenarios", help="only these keys (the floors always run)")
    parser.add_argument("--pg-bin", default="/usr/lib/postgresql/15/bin")
    parser.add_argument("--output", type=Path, default=PROJECT / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    backends = [b for b in args.backends.split(",") if b]
    if "postgres" in backends and not os.access(f"{args.pg_bin}/initdb", os.X_OK):
        print(f"*** SKIPPED PostgreSQL: no {args.pg_bin}/initdb ***", file=sys.stderr)
        backends.remove("postgres")
    reports = []
    for backend in backends:
        # A process each: Django's settings, so its database, are fixed per process.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            reports.append(pool.submit(one_backend, backend, args).result())
    markdown = report.render(
        reports,
        f"1 thread, {args.connections} connections; gunicorn, {WORKERS} sync workers; each "
        f"scenario: {args.warmup:g} s warm-up, then {args.rounds} rounds of "
        f"{args.floor_seconds:g} s of the floor and {args.seconds / args.rounds:g} s of it",
    )
    print(markdown)
    if not args.no_write:
        report.write(args.output, markdown)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def one_backend(backend: str, args: argparse.Namespace) -> report.Report:
    from django.conf import settings
    from django.db import connection

    from bench.env import environment, gunicorn

    only = set(args.scenarios.split(",")) if args.scenarios else None
    with environment(backend, pg_bin=args.pg_bin) as env, gunicorn(env, workers=WORKERS) as main:
        bench = Bench(env, main, args)
        try:
            rows = []
            for scenario in SCENARIOS:
                if scenario.floor or not only or scenario.key in only:
                    # A scenario with settings of its own is served, and its floor too, by an
                    # app server of its own (the floor's view does not read them).
                    with ExitStack() as own:
                        if scenario.settings:
                            bench.server = own.enter_context(
                                gunicorn(env, workers=WORKERS, settings=scenario.settings)
                            )
                            # Warm, like the first server by the scenarios before: a cold one
                            # would make a `once` scenario's calibration count too few requests.
                            bench.wrk(bench.floor_file, args.warmup)
                        rows.append(bench.measure(scenario))
                    bench.server = main
        except Exception:
            print(bench.server.log.read_text(errors="replace")[-5000:], file=sys.stderr)
            raise
        with connection.cursor() as cursor:
            postgres = connection.vendor == "postgresql"
            cursor.execute("SHOW server_version" if postgres else "SELECT sqlite_version()")
            database = f"{connection.display_name} {cursor.fetchone()[0]}"
        db = settings.DATABASES["default"]
        shown = {
            "DEBUG": settings.DEBUG,
            "CONN_MAX_AGE": db["CONN_MAX_AGE"],
            "CONN_HEALTH_CHECKS": db["CONN_HEALTH_CHECKS"],
            "SESSION_ENGINE": settings.SESSION_ENGINE,
            "CACHE": settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1],
            "STATICFILES": settings.STORAGES["staticfiles"]["BACKEND"].rsplit(".", 1)[-1],
            "CHECKOUT_RATE_PER_IP": settings.CHECKOUT_RATE_PER_IP,
            "CHECKOUT_RATE_PER_BROWSER": settings.CHECKOUT_RATE_PER_BROWSER,
        }
    summary = {"backend": backend, "database": database, "settings": shown}
    return {**summary, "results": rows, "checks": bench.checks}


@dataclass(frozen=True)
class Run:
    result: load.LoadResult
    app: float  # CPU seconds of the workers
    db: float  # and of the database server
    stripe_calls: int


class Bench:
    def __init__(self, env: Environment, server: Server, args: argparse.Namespace) -> None:
        self.env, self.shop, self.server, self.args = env, env.shop, server, args
        self.floor_file = load.write_requests(env.work / "floor.requests", [FLOOR])
        self.checks: list[str] = []

    def measure(self, scenario: Scenario) -> dict[str, Any]:
        """Load one scenario in rounds, each right after a short run of the floor, so both
        see the same machine: other processes on a shared box come and go."""
        from django.test import override_settings

        args, shop = self.args, self.shop
        self.checks += shop.prepare(scenario.data)
        built = scenario.requests(shop, CALIBRATION_REQUESTS + 2 if scenario.once else 2)
        # SQL and Stripe calls in process, of the second of two requests (a first request may
        # set something up); those two are not sent again.
        with override_settings(**scenario.settings):
            shop.call(built[0])
            queries, stripe_calls, status = shop.count(built[1 % len(built)])
        path = self.env.work / f"{scenario.key}.requests"
        if scenario.once:
            warm = self.wrk(load.write_requests(path, built[2:]), args.warmup, once=True)
            spare = built[2 + warm.result.requests + args.connections :]
            rate = warm.result.rps
            if warm.result.exhausted:
                # The warm-up ran out before its time: its rate is the requests' count, not the
                # server's; each connection's median turnaround tells the rate instead.
                rate = max(rate, args.connections * 1000 / warm.result.percentile_ms(50))
            wanted = math.ceil(max(rate, 50) * args.seconds * 1.6) + 100
            more = scenario.requests(shop, max(0, wanted - len(spare)))
            built += more
            load.write_requests(path, spare + more)
            skip = 0
        else:
            warm = self.wrk(load.write_requests(path, built), args.warmup, skip=2)
            skip = 2 + warm.result.requests + args.connections
        runs, floors = [], []
        for _ in range(1 if scenario.floor else args.rounds):
            if not scenario.floor:
                floors.append(self.wrk(self.floor_file, args.floor_seconds))
            seconds = args.floor_seconds * 3 if scenario.floor else args.seconds / args.rounds
            runs.append(self.wrk(path, seconds, once=scenario.once, skip=skip))
            # Requests in flight when wrk stopped reached the server too: never resend them.
            skip += runs[-1].result.requests + args.connections
        if scenario.check:
            self.checks.append(f"{scenario.label}: {scenario.check(shop, built)}")
        total = load.LoadResult.merge([r.result for r in runs])
        floor = load.LoadResult.merge([r.result for r in floors or runs])
        n = max(total.requests, 1)
        cpu_ms = 1000 * sum(r.app + r.db for r in runs) / n
        floor_cpu_ms = 1000 * sum(r.app + r.db for r in floors or runs) / max(floor.requests, 1)
        row = {
            "key": scenario.key,
            "label": scenario.label,
            "rps": total.rps,
            "floor_rps": floor.rps,
            "ratio": total.rps / floor.rps if floor.rps else 0.0,
            "cpu_ms": cpu_ms,
            "app_cpu_ms": 1000 * sum(r.app for r in runs) / n,
            "db_cpu_ms": 1000 * sum(r.db for r in runs) / n,
            "cpu_ratio": floor_cpu_ms / cpu_ms if cpu_ms else 0.0,
            "p50_ms": total.percentile_ms(50),
            "p99_ms": total.percentile_ms(99),
            "queries": queries,
            "stripe_calls": stripe_calls,
            "stripe_calls_under_load": sum(r.stripe_calls for r in [warm, *runs]),
            "no_stripe": scenario.no_stripe,
            # The request counted in process is one of the scenario's too.
            "unexpected": total.unexpected(scenario.expected) + (status != scenario.expected),
            "exhausted": total.exhausted,
            "loadavg": os.getloadavg()[0],
            "worker_rss_mib": load.rss_mib(load.children(self.server.master)),
        }
        print(
            f"[{self.env.backend}] {scenario.label}: {total.rps:.0f} req/s = "
            f"{row['ratio']:.2f} x floor, CPU {cpu_ms:.1f} ms/req = {row['cpu_ratio']:.2f} x "
            f"floor, {queries} queries, {row['unexpected']} unexpected",
            file=sys.stderr,
            flush=True,
        )
        return row

    def wrk(self, path: Path, seconds: float, *, once: bool = False, skip: int = 0) -> Run:
        """One wrk run, and the CPU seconds the workers and the database server spent in it:
        unlike requests per second, those hardly move when other processes share the cores."""
        workers, database = load.children(self.server.master), load.postgres_pids()
        app, db = load.cpu_seconds(workers), load.cpu_seconds(database)
        stripe = len(self.env.fake.requests)
        result = load.wrk(
            self.server.url,
            path,
            seconds=seconds,
            connections=self.args.connections,
            once=once,
            skip=skip,
        )
        load.wait_idle(self.server.port)
        app, db = load.cpu_seconds(workers) - app, load.cpu_seconds(database) - db
        return Run(result, app, db, len(self.env.fake.requests) - stripe)


if __name__ == "__main__":
    sys.exit(main())
