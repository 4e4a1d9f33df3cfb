"""The worker's memory over a long send run: does it stay flat, or grow with every message?

The same setup as ``bench.sends`` (pending nudges in the outbox, a FakeZalo, real
``celery -A workers worker``), with a rate limit far above what the workers can do, and
``--memory-sends`` messages (100,000 for the figures in docs/benchmarks.md; less by default
so that ``make bench`` stays short).

About once a second the run reads, from /proc, the RSS (``VmRSS``) of the worker's main
process and of each pool process, and their PSS (``smaps_rollup``: shared pages split
between the processes sharing them, so the sum counts the forked code once).

Baseline: the RSS at start, with the workers up and idle before the first task. Reported:
start, after warm-up (the first ``--memory-warmup`` sends: connections, caches and lazily
imported code in place), peak and end, the ratio peak ÷ start, and the slope of the total
after warm-up, which is what a leak would show as.
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass
from itertools import pairwise

import psycopg

from bench.core import Benchmark, Context, env_int
from bench.report import Ratio, Result
from bench.sends import describe_run, send_all, zalo_shop
from devtools.processes import ChildProcess

NAME = "memory"
# Far above what two pool processes can send: the limiter never makes anyone wait.
HIGH_RATE = 100_000.0
SAMPLE_EVERY = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument("--memory-sends", type=int, default=env_int("BENCH_MEMORY_SENDS", 10000),
                       help="messages sent while the worker's memory is sampled "
                            "(env BENCH_MEMORY_SENDS; default %(default)s; the documented "
                            "figures use 100000)")
    group.add_argument("--memory-warmup", type=int, default=env_int("BENCH_MEMORY_WARMUP", 1000),
                       help="sends after which the worker counts as warm "
                            "(env BENCH_MEMORY_WARMUP; default %(default)s)")


def _kib(path: str, field_name: str) -> int | None:
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class Sample:
    seconds: float
    done: int
    rss: dict[int, int]      # pid → KiB
    pss: dict[int, int]
    main_pid: int

    @property
    def total_rss(self) -> int:
        return sum(self.rss.values())

    @property
    def total_pss(self) -> int:
        return sum(self.pss.values())

    @property
    def main_rss(self) -> int:
        return self.rss.get(self.main_pid, 0)

    @property
    def pool_rss(self) -> list[int]:
        return [kib for pid, kib in sorted(self.rss.items()) if pid != self.main_pid]


class Sampler:
    """Samples the worker's memory about once a second in a thread of its own, so that it
    keeps sampling while this process is busy enqueueing."""

    def __init__(self, conninfo: str):
        self.conninfo = conninfo
        self.started = time.monotonic()
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, workers: list[ChildProcess]) -> None:
        """The baseline sample (idle workers), then the sampling thread."""
        self.take(workers, 0)
        self._thread = threading.Thread(target=self._loop, args=(workers,),
                                        name="bench-memory-sampler", daemon=True)
        self._thread.start()

    def _loop(self, workers: list[ChildProcess]) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as db:
            while not self._stop.wait(SAMPLE_EVERY):
                row = db.execute("SELECT count(*) FROM messages WHERE status = 'sent'"
                                 ).fetchone()
                self.take(workers, int(row[0]) if row else 0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def finish(self, workers: list[ChildProcess], done: int) -> None:
        """Stop sampling and take the last sample, while the workers still run."""
        if self._thread is not None and not self._stop.is_set():
            self.stop()
            self.take(workers, done)

    def take(self, workers: list[ChildProcess], done: int) -> None:
        worker = workers[0]
        if worker.process is None:
            return
        rss, pss = {}, {}
        for pid in worker.pids():
            if (kib := _kib(f"/proc/{pid}/status", "VmRSS")) is not None:
                rss[pid] = kib
            if (kib := _kib(f"/proc/{pid}/smaps_rollup", "Pss")) is not None:
                pss[pid] = kib
        sample = Sample(time.monotonic() - self.started, done, rss, pss, worker.process.pid)
        with self._lock:
            self.samples.append(sample)


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def _describe(label: str, sample: Sample) -> str:
    pool = " + ".join(_mib(kib) for kib in sample.pool_rss)
    return (f"{label} ({sample.done:,} sent, {sample.seconds:.0f} s): RSS {_mib(sample.total_rss)}"
            f" = main {_mib(sample.main_rss)} + pool {pool}; PSS {_mib(sample.total_pss)}")


def slope_kib_per_1000(samples: list[Sample]) -> float | None:
    """Least-squares slope of the total RSS against messages sent (KiB per 1,000 sends)."""
    points = [(s.done, s.total_rss) for s in samples]
    if len(points) < 3 or points[-1][0] == points[0][0]:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return None
    cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return cov / var * 1000


def run(ctx: Context) -> Result:
    args = ctx.args
    count = args.memory_sends
    with zalo_shop(ctx, "memory", count=count, rate=HIGH_RATE) as shop:
        sampler = Sampler(ctx.conninfo(shop.url))

        def on_poll(workers: list[ChildProcess], done: int) -> None:
            if done >= count:
                sampler.finish(workers, done)

        try:
            sent = send_all(ctx, shop, "memory",
                            rate_label=f"sends while sampling (limit {HIGH_RATE:g}/s)",
                            before_enqueue=sampler.start, on_poll=on_poll)
        finally:
            sampler.stop()
    samples = [s for s in sampler.samples if s.rss]
    result = Result(NAME)
    result.rates.append(sent.rate)
    start, end = samples[0], samples[-1]
    peak = max(samples, key=lambda s: s.total_rss)
    warm = next((s for s in samples if s.done >= min(args.memory_warmup, count)), end)
    result.ratios += [
        Ratio("worker RSS peak ÷ start (main + pool)", peak.total_rss / start.total_rss),
        Ratio("worker RSS end ÷ after warm-up", end.total_rss / warm.total_rss),
        Ratio("main process RSS peak ÷ start",
              max(s.main_rss for s in samples) / start.main_rss),
        Ratio("largest pool process RSS peak ÷ start",
              max(max(s.pool_rss, default=0) for s in samples)
              / max(max(start.pool_rss, default=1), 1)),
    ]
    steps = []
    for tenth in range(0, 11):
        target = count * tenth // 10
        found = next((s for s in samples if s.done >= target), end)
        steps.append(f"{tenth * 10}%: {found.total_rss / 1024:.0f}")
    # Does the send rate hold up over a long run (a growing outbox, a long queue)?
    marks = [start] + [next((s for s in samples if s.done >= count * tenth // 10), end)
                       for tenth in range(1, 11)]
    rates = [f"{(b.done - a.done) / (b.seconds - a.seconds):.0f}"
             for a, b in pairwise(marks) if b.seconds > a.seconds]
    after_warm = [s for s in samples if s.done >= warm.done]
    slope = slope_kib_per_1000(after_warm)
    result.notes += [
        _describe("start, idle", start),
        _describe("after warm-up", warm),
        _describe("peak", peak),
        _describe("end", end),
        "total RSS (MiB) by share of messages sent: " + ", ".join(steps),
        "sends/s in each tenth of the run (the first includes the workers' start and runs "
        "while enqueue_sends still fills the queue): " + ", ".join(rates),
        (f"growth after warm-up: {slope:+.1f} KiB of total RSS per 1,000 sends "
         f"(least squares over {len(after_warm)} samples)" if slope is not None
         else "too few samples after warm-up for a slope"),
    ]
    result.notes += describe_run(sent, HIGH_RATE)
    return result


BENCHMARK = Benchmark(
    name=NAME,
    summary="worker RSS (main + pool) over a long send run: start, peak, end, growth",
    run=run, add_arguments=add_arguments)
