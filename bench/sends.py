"""Outbox sends per second to a fake Zalo through real workers, against the configured rate
limit and against bare Celery no-ops.

Setup (shared with ``bench.memory``): a fresh migrated database with N customers (each with a
Zalo user id) and one pending nudge each in ``messages``; a ``FakeZalo`` in this process;
``celery -A workers worker`` with ``LOYALTY_ZALO_*`` pointing at it, the token pair stored
the way ops authorise the OA (``DbTokenStore(...).save(...)``), and
``LOYALTY_ZALO_RATE_PER_SECOND`` set to the limit under test. The clock runs from the first
``TaskQueue.send_messages`` until every message is ``sent`` (or failed for good).

Three runs: one with a limit above what the workers can do (``--send-rate``, so the figure
is the send path's own speed), one below it (``--capped-rate``, to show that the shared
Redis limiter holds the workers to it), and one with the high limit while the fake answers
``--zalo-latency-ms`` late, as a real Zalo across the internet does (the fake on 127.0.0.1
answers in about a millisecond).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from cryptography.fernet import Fernet
from pydantic import SecretStr

from bench.core import Benchmark, Context, env_int
from bench.noop import noop_baseline
from bench.order_events import WorkerLog
from bench.procs import (
    CpuMeter,
    celery_workers,
    crowding_warning,
    describe_cpu,
    wait_for_count,
)
from bench.report import Rate, Ratio, Result, ratio
from devtools.fake_zalo import CS_PATH, FakeZalo
from devtools.processes import ChildProcess
from loyalty.bootstrap import Loyalty
from loyalty.domain.crosssell import bonus_deadline, nudge_text
from loyalty.queueing import TaskQueue, make_celery
from loyalty.settings import Settings
from loyalty.storage.zalo_tokens import DbTokenStore

NAME = "sends"
NOOP_LABEL = "baseline: Celery no-op tasks"  # what bench.noop calls its rate
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument("--sends", type=int, default=env_int("BENCH_SENDS", 3000),
                       help="nudges sent with the high limit (env BENCH_SENDS; "
                            "default %(default)s)")
    group.add_argument("--send-rate", type=float, default=env_int("BENCH_SEND_RATE", 200),
                       help="LOYALTY_ZALO_RATE_PER_SECOND for that run (env BENCH_SEND_RATE; "
                            "default %(default)s)")
    group.add_argument("--capped-sends", type=int, default=env_int("BENCH_CAPPED_SENDS", 750),
                       help="nudges sent with the low limit, 0 to skip that run "
                            "(env BENCH_CAPPED_SENDS; default %(default)s)")
    group.add_argument("--capped-rate", type=float, default=env_int("BENCH_CAPPED_RATE", 25),
                       help="the low limit, below what the workers can do "
                            "(env BENCH_CAPPED_RATE; default %(default)s)")
    group.add_argument("--latency-sends", type=int, default=env_int("BENCH_LATENCY_SENDS", 300),
                       help="nudges sent (high limit) while the fake Zalo answers late, 0 to "
                            "skip that run (env BENCH_LATENCY_SENDS; default %(default)s)")
    group.add_argument("--zalo-latency-ms", type=int,
                       default=env_int("BENCH_ZALO_LATENCY_MS", 100),
                       help="how late the fake Zalo answers in that run "
                            "(env BENCH_ZALO_LATENCY_MS; default %(default)s)")


# --- the shop: database, fake Zalo, outbox --------------------------------------------

@dataclass
class Shop:
    url: str
    settings: Settings
    fake: FakeZalo
    message_ids: list[int]


def _insert_outbox(conninfo: str, settings: Settings, count: int) -> list[int]:
    """``count`` members near a tier, each with one pending nudge, as a scan leaves them."""
    loyalty = Loyalty.from_settings(settings)
    try:
        program = loyalty.program
        now = datetime.now(UTC)
        text = nudge_text(program, points=1720, name="Khách hàng", zone=ZONE,
                          deadline=bonus_deadline(program, now))
    finally:
        loyalty.engine.dispose()
    with psycopg.connect(conninfo, autocommit=True) as db, db.transaction():
        db.execute("""
            INSERT INTO customers (id, phone, zalo_user_id, name, tier, points, created_at,
                                   updated_at)
            SELECT 'S-' || g, '09' || lpad(g::text, 8, '0'), (8756431234567890000 + g)::text,
                   'Khách hàng ' || g, 'silver', 1720, %(now)s, %(now)s
            FROM generate_series(1, %(n)s) AS g""", {"n": count, "now": now})
        rows = db.execute("""
            INSERT INTO messages (kind, customer_id, period, channel, recipient, text, status,
                                  attempts, created_at, updated_at)
            SELECT 'nudge', id, %(day)s, 'cs', zalo_user_id, %(text)s, 'pending', 0,
                   %(now)s, %(now)s
            FROM customers ORDER BY id RETURNING id""",
                          {"day": now.astimezone(ZONE).date(), "text": text, "now": now})
        ids = sorted(row[0] for row in rows)
    return ids


@contextmanager
def zalo_shop(ctx: Context, label: str, *, count: int, rate: float) -> Iterator[Shop]:
    """A migrated database with ``count`` pending nudges and a FakeZalo, dropped/stopped
    after the block (also on error)."""
    with ExitStack() as stack:
        url = ctx.new_database(label)
        stack.callback(ctx.drop_database, url)
        fake = FakeZalo().start()
        stack.callback(fake.stop)
        pair = fake.initial_tokens
        settings = ctx.settings(url).model_copy(update={
            "zalo_app_id": fake.app_id, "zalo_secret_key": SecretStr(fake.secret_key),
            "zalo_access_token": SecretStr(pair.access_token),
            "zalo_refresh_token": SecretStr(pair.refresh_token),
            "zalo_api_url": fake.url, "zalo_oauth_url": fake.url,
            "zalo_business_api_url": fake.url, "zalo_rate_per_second": rate,
            "zalo_token_keys": SecretStr(Fernet.generate_key().decode())})
        # The pair a shop stores when it authorises the OA (as tests/test_crosssell.py does);
        # the configured one is only the fallback for an empty store.
        loyalty = Loyalty.from_settings(settings)
        try:
            DbTokenStore(loyalty.sessions, settings.token_keys()).save(fake.issue_tokens())
        finally:
            loyalty.engine.dispose()
        ids = _insert_outbox(ctx.conninfo(url), settings, count)
        ctx.reset_redis()  # no queue, rate-limit window or token lock left from before
        yield Shop(url, settings, fake, ids)


def _statuses(db: psycopg.Connection[Any]) -> dict[str, int]:
    return {status: count for status, count in db.execute(
        "SELECT status, count(*) FROM messages GROUP BY status")}


def _done(db: psycopg.Connection[Any]) -> int:
    row = db.execute("SELECT count(*) FROM messages WHERE status IN ('sent', 'failed')"
                     ).fetchone()
    return int(row[0]) if row else 0


def backend_pids(db: psycopg.Connection[Any]) -> Callable[[], list[int]]:
    def pids() -> list[int]:
        return [row[0] for row in db.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()")]
    return pids


WORKER_MAIN = "worker main process"
WORKER_POOL = "worker pool processes"


def _pids(workers: list[ChildProcess]) -> list[int]:
    return [pid for worker in workers for pid in worker.pids()]


@dataclass
class SendRun:
    rate: Rate
    enqueue_seconds: float
    statuses: dict[str, int]
    fake_received: int
    per_second: list[int]  # messages sent in each whole second of sent_at, in order
    cpu: dict[str, float]
    log: WorkerLog


def send_all(ctx: Context, shop: Shop, label: str, *, rate_label: str,
             on_poll: Callable[[list[ChildProcess], int], None] | None = None,
             before_enqueue: Callable[[list[ChildProcess]], None] | None = None,
             poll_interval: float = 0.2) -> SendRun:
    """Start the workers, enqueue every nudge with ``TaskQueue.send_messages``, wait until all are
    sent or failed. ``on_poll(workers, done)`` runs at every poll (memory sampling)."""
    count = len(shop.message_ids)
    producer = make_celery(shop.settings, name="bench-sender")
    try:
        with celery_workers(ctx, shop.settings, "workers", label=label) as workers, \
                psycopg.connect(ctx.conninfo(shop.url), autocommit=True) as db, \
                ctx.redis() as client:
            if before_enqueue:
                before_enqueue(workers)
            redis_pid = int(client.info("server")["process_id"])
            mains = {worker.process.pid for worker in workers if worker.process}
            meter = CpuMeter({
                WORKER_MAIN: lambda: [pid for pid in mains if pid in _pids(workers)],
                WORKER_POOL: lambda: [pid for pid in _pids(workers) if pid not in mains],
                "PostgreSQL backends": backend_pids(db),
                "Redis server (all its clients)": lambda: [redis_pid],
                "bench (FakeZalo, producer, polling)": lambda: [os.getpid()]}).start()

            def read() -> int:
                done = _done(db)
                if on_poll:
                    on_poll(workers, done)
                return done

            started = time.monotonic()
            TaskQueue(producer).send_messages(shop.message_ids)
            enqueued = time.monotonic()
            finished = wait_for_count(read, count, what=f"{label} sends",
                                      interval=poll_interval)
            cpu = meter.used()
            statuses = _statuses(db)
            per_second = [row[0] for row in db.execute(
                "SELECT count(*) FROM messages WHERE sent_at IS NOT NULL"
                " GROUP BY date_trunc('second', sent_at) ORDER BY date_trunc('second', sent_at)")]
    finally:
        producer.close()
    log = WorkerLog.read([worker.log_path for worker in workers])
    return SendRun(Rate(rate_label, count, finished - started, "sends"), enqueued - started,
                   statuses, len(shop.fake.sent), per_second, cpu, log)


def describe_seconds(per_second: list[int]) -> str:
    """Sends per whole second of ``sent_at``, leaving out the first and last (partial) ones."""
    inner = per_second[1:-1]
    if not inner:
        return "too short to count per second"
    return (f"per second of sent_at: median {statistics.median(inner):.0f}, "
            f"max {max(inner)}, min {min(inner)} over {len(inner)} full seconds")


def describe_run(run: SendRun, limit: float, label: str | None = None) -> list[str]:
    label = label or f"limit {limit:g}/s"
    task_ms = run.log.task_ms
    spread = (f"median {statistics.median(task_ms):.1f} ms, p95 "
              f"{statistics.quantiles(task_ms, n=20)[-1]:.1f} ms" if len(task_ms) > 1 else "n/a")
    notes = [
        f"{label}: {run.rate.count:,} sends; send_messages took "
        f"{run.enqueue_seconds:.2f} s; statuses at the end {run.statuses}; the fake Zalo accepted "
        f"{run.fake_received:,} messages; {describe_seconds(run.per_second)}; "
        f"task time {spread}; {run.log.retries} retries",
        f"{label}: " + describe_cpu(run.cpu, run.rate.seconds)
        + f"; workers {_worker_cpu(run.cpu) * 1000 / run.rate.count:.2f} ms CPU per send",
    ]
    if run.statuses.get("sent", 0) != run.rate.count:
        notes.append(f"WARNING: only {run.statuses.get('sent', 0)} of {run.rate.count} sent")
    notes += filter(None, [crowding_warning(f"the run with {label}", run.cpu, run.rate.seconds)])
    return notes


def _worker_cpu(cpu: dict[str, float]) -> float:
    return cpu.get(WORKER_MAIN, 0.0) + cpu.get(WORKER_POOL, 0.0)


def noop_rate(ctx: Context, count: int) -> tuple[Rate, str]:
    """The no-op baseline of this run: order-events' if it ran, else measured now."""
    earlier = ctx.results.get("order-events")
    found = earlier.rate(NOOP_LABEL) if earlier else None
    if found:
        return found, "measured by order-events earlier in this run"
    return noop_baseline(ctx, count).rate, "measured now"


def run(ctx: Context) -> Result:
    args = ctx.args
    result = Result(NAME)
    pool = f"{args.workers} worker(s) × concurrency {args.concurrency}"

    with zalo_shop(ctx, "sends", count=args.sends, rate=args.send_rate) as shop:
        free = send_all(ctx, shop, "sends", rate_label=f"sends, limit {args.send_rate:g}/s")
    noop, where = noop_rate(ctx, args.sends)
    result.rates += [free.rate, noop]
    result.ratios += [Ratio(f"sends/s ÷ the {args.send_rate:g}/s limit",
                            free.rate.per_second / args.send_rate),
                      ratio("sends/s ÷ no-op tasks/s", free.rate, noop)]
    result.notes.append(f"{pool}, prefork, --loglevel={args.worker_loglevel}; one FakeZalo "
                        f"in the bench process; no-op baseline {where}")
    result.notes += describe_run(free, args.send_rate)

    if args.capped_sends > 0:
        with zalo_shop(ctx, "capped", count=args.capped_sends, rate=args.capped_rate) as shop:
            capped = send_all(ctx, shop, "capped",
                              rate_label=f"sends, limit {args.capped_rate:g}/s")
        result.rates.append(capped.rate)
        result.ratios.append(Ratio(f"sends/s ÷ the {args.capped_rate:g}/s limit",
                                   capped.rate.per_second / args.capped_rate))
        result.notes += describe_run(capped, args.capped_rate)

    if args.latency_sends > 0:
        latency = args.zalo_latency_ms / 1000
        with zalo_shop(ctx, "latency", count=args.latency_sends, rate=args.send_rate) as shop:
            # An answer that is late but normal (the fake's injected delay with no error).
            shop.fake.fail_next(CS_PATH, delay=latency, times=args.latency_sends)
            slow = send_all(ctx, shop, "latency", rate_label=f"sends, limit "
                            f"{args.send_rate:g}/s, Zalo answering in {args.zalo_latency_ms} ms")
        # Prefork runs one task per pool process, so a send that waits on Zalo holds one.
        bound = args.workers * args.concurrency / latency
        result.rates.append(slow.rate)
        result.ratios.append(Ratio(f"sends/s ÷ pool processes ÷ latency ({bound:g}/s)",
                                   slow.rate.per_second / bound))
        result.ratios.append(ratio("sends/s with latency ÷ without", slow.rate, free.rate))
        result.notes += describe_run(slow, args.send_rate, f"limit {args.send_rate:g}/s, "
                                     f"Zalo answering in {args.zalo_latency_ms} ms")
    return result


BENCHMARK = Benchmark(
    name=NAME,
    summary="outbox sends/s to a fake Zalo through real workers vs the rate limit and "
            "Celery no-ops",
    run=run, add_arguments=add_arguments)
