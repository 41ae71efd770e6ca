"""Where a request's time goes: `python -m bench.profile [--backend sqlite] [--profile] KEY...`

Serves the requests of each scenario of `bench.scenarios` (those `make bench` sends with wrk,
on the same data) in process, through the WSGI application gunicorn runs, and prints the CPU
per request of this process (and, on PostgreSQL, of the database server) next to the floor's;
with --profile, a cProfile of each. The fake Stripe answers from this process, so checkout
figures include it. Quicker than `make bench` for checking one change, which stays the measure
of record.
"""

import argparse
import collections
import cProfile
import itertools
import pstats
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.env import Shop, environment
from bench.load import cpu_seconds, postgres_pids
from bench.scenarios import SCENARIOS, Scenario


def main() -> int:
    keys = [s.key for s in SCENARIOS if not s.floor]
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("keys", nargs="*", metavar="KEY", help=f"default: all of {keys}")
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--requests", type=int, default=400, help="timed requests per scenario")
    parser.add_argument("--warmup", type=int, default=50, help="requests before timing")
    parser.add_argument("--profile", action="store_true", help="print cProfile statistics")
    parser.add_argument(
        "--sql", action="store_true", help="print each statement's count and wall ms per request"
    )
    args = parser.parse_args()
    if set(args.keys) - set(keys):
        parser.error(f"unknown scenario {', '.join(set(args.keys) - set(keys))}")
    chosen = [SCENARIOS[0], *(s for s in SCENARIOS if s.key in (args.keys or keys))]
    with environment(args.backend) as env:
        from django.test import override_settings

        shop, floor = env.shop, 0.0
        for scenario in chosen:
            with override_settings(**scenario.settings):
                floor = _serve(args, shop, scenario, floor)
    return 0


def _serve(args: argparse.Namespace, shop: Shop, scenario: Scenario, floor: float) -> float:
    """Serve one scenario's requests and print its CPU per request; the floor's, if none yet."""
    for note in shop.prepare(scenario.data):
        print(f"data {note}", file=sys.stderr)
    wanted = args.warmup + args.requests
    built = scenario.requests(shop, wanted if scenario.once else 1)
    feed = iter(built) if scenario.once else itertools.cycle(built)
    for request in itertools.islice(feed, args.warmup):
        shop.expect(request, scenario.expected)
    batch = list(itertools.islice(feed, args.requests))
    database = postgres_pids()
    profiler = cProfile.Profile() if args.profile else None
    app, db = time.process_time(), cpu_seconds(database)
    if profiler:
        profiler.enable()
    with _statements(args.sql, len(batch)):
        for request in batch:
            shop.expect(request, scenario.expected)
    if profiler:
        profiler.disable()
    app = (time.process_time() - app) * 1000 / len(batch)
    db = (cpu_seconds(database) - db) * 1000 / len(batch)
    if profiler:
        stats = pstats.Stats(profiler).strip_dirs()
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(60)
    floor = floor or app + db
    print(
        f"{scenario.key:24} {app + db:6.2f} ms CPU/req (app {app:.2f} + db {db:.2f})"
        f"  x floor {floor / (app + db):.2f}",
        flush=True,
    )
    return floor


@contextmanager
def _statements(wanted: bool, requests: int) -> Iterator[None]:
    """With `wanted`, time every statement the requests run, and print them by text."""
    if not wanted:
        yield
        return
    from django.db import connection

    seen: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])

    def timed(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            entry = seen[" ".join(sql.split())[:150]]
            entry[0] += 1
            entry[1] += time.perf_counter() - started

    with connection.execute_wrapper(timed):
        yield
    for sql, (count, seconds) in seen.items():
        print(f"{count / requests:5.2f}/req {seconds * 1000 / count:7.3f} ms  {sql}")


if __name__ == "__main__":
    sys.exit(main())
