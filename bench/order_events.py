"""Order events per second end to end, against bare Celery no-ops on the same broker.

End to end: signed ``POST /v1/order-events`` batches to ``loyalty serve`` → Redis → real
``celery -A workers worker`` processes → PostgreSQL, from the first POST until every event
has a row in ``processed_events`` (or was refused and kept).

Then a second sample of the same shape, on a fresh database, in two separate halves, to show
where the time goes: the HTTP ingest alone (no worker running, nothing of ours competing for
the CPUs), and the workers alone draining the queue that ingest left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests

from bench.core import WEBHOOK_SECRET, BenchError, Benchmark, Context, env_int
from bench.eventgen import order_events
from bench.noop import noop_baseline
from bench.procs import (
    CpuMeter,
    api_server,
    celery_workers,
    crowding_warning,
    describe_cpu,
    wait_for_count,
)
from bench.report import Rate, Result, ratio
from loyalty.api import signature_of
from loyalty.queueing import ORDER_EVENTS

NAME = "order-events"
END_TO_END = "end to end: HTTP → Redis → workers → PostgreSQL"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument("--events", type=int, default=env_int("BENCH_EVENTS", 5000),
                       help="order events to send, and no-ops in the baseline "
                            "(env BENCH_EVENTS; default %(default)s)")
    group.add_argument("--batch", type=int, default=env_int("BENCH_BATCH", 500),
                       help="events per POST (env BENCH_BATCH; default %(default)s)")
    group.add_argument("--customers", type=int, default=env_int("BENCH_CUSTOMERS", 1000),
                       help="distinct customers (env BENCH_CUSTOMERS; default %(default)s)")
    group.add_argument("--split-events", type=int, default=env_int("BENCH_SPLIT_EVENTS", 2000),
                       help="events for the ingest-alone / drain-alone breakdown, 0 to skip it "
                            "(env BENCH_SPLIT_EVENTS; default %(default)s)")


Body = tuple[bytes, str]


def signed_bodies(events: list[dict[str, Any]], batch: int) -> list[Body]:
    # Encoded and signed before the clock starts: that is the sender's work, not ours.
    bodies = []
    for start in range(0, len(events), batch):
        body = json.dumps({"events": events[start:start + batch]}, ensure_ascii=False).encode()
        bodies.append((body, signature_of(body, WEBHOOK_SECRET)))
    return bodies


def post_all(http: requests.Session, base: str, bodies: list[Body]) -> None:
    for body, signature in bodies:
        response = http.post(f"{base}/v1/order-events", data=body, timeout=120, headers={
            "Content-Type": "application/json", "X-Loyalty-Signature": signature})
        if response.status_code != 202:
            raise BenchError(f"POST /v1/order-events: {response.status_code} "
                             f"{response.text[:500]}")


def _scalar(db: psycopg.Connection[Any], query: str) -> Any:
    row = db.execute(query).fetchone()
    return row[0] if row else None


def _settled(db: psycopg.Connection[Any]) -> int:
    """Events that are done with: applied, or refused and kept."""
    return int(_scalar(db, "SELECT (SELECT count(*) FROM processed_events)"
                           " + (SELECT count(*) FROM rejected_events)"))


def _backend_pids(db: psycopg.Connection[Any]) -> Callable[[], list[int]]:
    def pids() -> list[int]:
        return [row[0] for row in db.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()")]
    return pids


_SUCCEEDED = re.compile(r"succeeded in ([0-9.]+)s")


@dataclass
class WorkerLog:
    """What the worker logs say about each task (the format may change; read defensively)."""

    service_ms: list[float] = field(default_factory=list)   # handle_order_events, per event
    task_ms: list[float] = field(default_factory=list)      # Celery's "succeeded in"
    retries: int = 0

    @classmethod
    def read(cls, paths: list[Path]) -> WorkerLog:
        found = cls()
        for path in paths:
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("{") and '"event handled"' in line:
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        entry = json.loads(line)
                        # One line per event, each with its batch's time: per event is
                        # the batch's time shared out.
                        found.service_ms.append(float(entry["ms"]) / int(entry.get("batch", 1)))
                elif match := _SUCCEEDED.search(line):
                    found.task_ms.append(float(match.group(1)) * 1000)
                elif " retry: " in line:
                    found.retries += 1
        return found

    def describe(self) -> str:
        def spread(values: list[float]) -> str:
            if len(values) < 2:
                return "n/a"
            cuts = statistics.quantiles(values, n=20)
            return (f"median {statistics.median(values):.1f} ms, p95 {cuts[-1]:.1f} ms "
                    f"(n={len(values):,})")
        return (f"per event inside a worker: the service (handle_order_events, a batch's time "
                f"shared by its events) "
                f"{spread(self.service_ms)}; the whole Celery task {spread(self.task_ms)}; "
                f"{self.retries} retries")


@dataclass
class EndToEnd:
    rate: Rate
    posted_seconds: float
    cpu: dict[str, float]
    refused: int
    log: WorkerLog


def end_to_end(ctx: Context, bodies: list[Body], count: int) -> EndToEnd:
    url = ctx.new_database("e2e")
    settings = ctx.settings(url)
    ctx.reset_redis()
    with api_server(ctx, settings) as (api, base), \
            celery_workers(ctx, settings, "workers", label="e2e") as workers, \
            psycopg.connect(ctx.conninfo(url), autocommit=True) as db, \
            requests.Session() as http, ctx.redis() as client:
        redis_pid = int(client.info("server")["process_id"])
        meter = CpuMeter({
            "workers": lambda: [pid for worker in workers for pid in worker.pids()],
            "API (uvicorn)": api.pids,
            "PostgreSQL backends": _backend_pids(db),
            "Redis server (all its clients)": lambda: [redis_pid],
            "bench (client, polling)": lambda: [os.getpid()]}).start()
        started = time.monotonic()
        post_all(http, base, bodies)
        posted = time.monotonic()
        done = wait_for_count(lambda: _settled(db), count, what="end to end")
        cpu = meter.used()
        refused = int(_scalar(db, "SELECT count(*) FROM rejected_events"))
    log = WorkerLog.read([worker.log_path for worker in workers])
    ctx.drop_database(url)
    return EndToEnd(Rate(END_TO_END, count, done - started), posted - started, cpu,
                    refused, log)


@dataclass
class Split:
    ingest: Rate
    ingest_cpu: dict[str, float]
    drain: Rate
    drain_cpu: dict[str, float]
    drain_wall: float


def split(ctx: Context, bodies: list[Body], count: int) -> Split:
    url = ctx.new_database("split")
    settings = ctx.settings(url)
    ctx.reset_redis()
    with api_server(ctx, settings) as (api, base), requests.Session() as http:
        meter = CpuMeter({"API (uvicorn)": api.pids,
                          "bench (client)": lambda: [os.getpid()]}).start()
        started = time.monotonic()
        post_all(http, base, bodies)
        ingest = Rate("  HTTP ingest alone (no worker running)", count,
                      time.monotonic() - started)
        ingest_cpu = meter.used()
    with ctx.redis() as client:
        queued = client.llen(ORDER_EVENTS)
    # Batched by customer: fewer tasks than events, but never none.
    if not 0 < queued <= count:
        raise BenchError(f"ingest left {queued} tasks in the queue for {count} events")
    with celery_workers(ctx, settings, "workers", label="drain") as workers, \
            psycopg.connect(ctx.conninfo(url), autocommit=True) as db:
        meter = CpuMeter({
            "workers": lambda: [pid for worker in workers for pid in worker.pids()],
            "PostgreSQL backends": _backend_pids(db)}).start()
        started = time.monotonic()
        wait_for_count(lambda: _settled(db), count, what="drain")
        wall = time.monotonic() - started
        drain_cpu = meter.used()
        # Timed from the rows themselves: the workers start consuming as soon as they are
        # ready, a moment before this process notices.
        first_to_last = float(_scalar(
            db, "SELECT extract(epoch FROM max(processed_at) - min(processed_at))"
                " FROM processed_events") or wall)
    ctx.drop_database(url)
    drain = Rate("  worker drain alone (queue filled)", count, first_to_last)
    return Split(ingest, ingest_cpu, drain, drain_cpu, wall)


def run(ctx: Context) -> Result:
    args = ctx.args
    events = order_events(args.events, customers=args.customers, seed=1, prefix="live")
    bodies = signed_bodies(events, args.batch)
    pool = f"{args.workers} worker(s) × concurrency {args.concurrency}"
    result = Result(NAME)

    noop = noop_baseline(ctx, len(events))
    e2e = end_to_end(ctx, bodies, len(events))
    result.rates += [e2e.rate, noop.rate]
    result.ratios.append(ratio("end to end ÷ no-op", e2e.rate, noop.rate))
    result.notes += [
        f"{pool}, prefork, --loglevel={args.worker_loglevel}; {len(bodies)} POSTs of "
        f"≤{args.batch} events, {args.customers:,} customers",
        f"end to end: all POSTs answered 202 after {e2e.posted_seconds:.2f} s "
        f"({len(events) / e2e.posted_seconds:,.0f} events/s accepted while workers ran)",
        "end to end " + describe_cpu(e2e.cpu, e2e.rate.seconds),
        "end to end " + e2e.log.describe(),
        f"no-op: one producer sent all in {noop.enqueue_seconds:.2f} s; "
        + describe_cpu(noop.cpu, noop.rate.seconds),
        _cpu_per_item("workers", e2e.cpu, len(events), noop.cpu, len(events)),
    ]
    result.notes += filter(None, [
        crowding_warning("the no-op baseline", noop.cpu, noop.rate.seconds),
        crowding_warning("end to end", e2e.cpu, e2e.rate.seconds)])
    if e2e.refused:
        result.notes.append(f"WARNING: {e2e.refused} events were refused (see rejected_events)")

    if args.split_events > 0:
        # A sample of its own, smaller: these are rates, and the whole run must stay short.
        sample = order_events(args.split_events, customers=args.customers, seed=3,
                              prefix="split")
        parts = split(ctx, signed_bodies(sample, args.batch), len(sample))
        result.rates += [parts.ingest, parts.drain]
        result.ratios += [ratio("worker drain alone ÷ no-op", parts.drain, noop.rate),
                          ratio("HTTP ingest alone ÷ no-op", parts.ingest, noop.rate)]
        result.notes += ["ingest alone " + describe_cpu(parts.ingest_cpu, parts.ingest.seconds),
                         "drain alone " + describe_cpu(parts.drain_cpu, parts.drain_wall)]
        result.notes += filter(None, [
            crowding_warning("ingest alone", parts.ingest_cpu, parts.ingest.seconds),
            crowding_warning("drain alone", parts.drain_cpu, parts.drain_wall)])
    return result


def _cpu_per_item(label: str, cpu: dict[str, float], count: int,
                  baseline_cpu: dict[str, float], baseline_count: int) -> str:
    ms = cpu.get(label, 0.0) * 1000 / count
    baseline_ms = baseline_cpu.get(label, 0.0) * 1000 / baseline_count
    return (f"{label} CPU per item: {ms:.2f} ms per order event vs {baseline_ms:.2f} ms "
            f"per no-op task")


BENCHMARK = Benchmark(
    name=NAME,
    summary="order events/s end to end (HTTP → Redis → Celery → PostgreSQL) vs Celery no-ops",
    run=run, add_arguments=add_arguments)
