"""The Celery baseline: bare no-op tasks through the same broker, config and worker flags."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from bench.core import Context
from bench.procs import CpuMeter, celery_workers, wait_for_count
from bench.report import Rate
from loyalty.queueing import ORDER_EVENTS, make_celery

NOOP = "bench.noop"
DONE_KEY = "bench:noop:done"


@dataclass(frozen=True)
class NoopRun:
    rate: Rate
    # How long the one producer took to send them all (the workers consuming meanwhile).
    enqueue_seconds: float
    cpu: dict[str, float]


def noop_baseline(ctx: Context, count: int) -> NoopRun:
    """Send ``count`` no-ops the way ``enqueue_order_events`` sends events (one producer,
    ``send_task`` in a loop, to the order-events queue) and time until every one has run."""
    settings = ctx.settings(database_url=None)
    ctx.reset_redis()
    sender = make_celery(settings, name="bench-sender")
    with celery_workers(ctx, settings, "bench.noop_app", label="noop") as workers, \
            ctx.redis() as client:
        redis_pid = int(client.info("server")["process_id"])
        meter = CpuMeter({
            "workers": lambda: [pid for worker in workers for pid in worker.pids()],
            "Redis server (all its clients)": lambda: [redis_pid],
            "bench (producer)": lambda: [os.getpid()]}).start()
        started = time.monotonic()
        with sender.producer_or_acquire() as producer:
            for _ in range(count):
                sender.send_task(NOOP, queue=ORDER_EVENTS, producer=producer, retry=True)
        enqueued = time.monotonic()
        done = wait_for_count(lambda: int(client.get(DONE_KEY) or 0), count, what="no-op tasks")
        cpu = meter.used()
    sender.close()
    return NoopRun(Rate("baseline: Celery no-op tasks", count, done - started, "tasks"),
                   enqueued - started, cpu)
