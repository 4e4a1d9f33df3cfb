"""Child processes under test (Celery workers, the API), waiting on them, and their CPU time."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import requests
from celery import Celery

from bench.core import BenchError, Context
from devtools.processes import (
    CLOCK_TICKS,
    ChildProcess,
    cpu_seconds,
    free_port,
    settings_env,
    worker_argv,
)
from loyalty.queueing import make_celery
from loyalty.settings import Settings

BIN = Path(sys.executable).parent


@contextmanager
def celery_workers(ctx: Context, settings: Settings, app: str, *, label: str
                   ) -> Iterator[list[ChildProcess]]:
    """``celery -A APP worker`` processes as ops start them, stopped when the block ends.

    The loyalty workers and the no-op baseline go through this same function, so they run
    with the same pool, concurrency, flags and log level.
    """
    args = ctx.args
    control = make_celery(settings, name="bench-control")
    with ExitStack() as stack:
        stack.callback(control.close)
        started: list[ChildProcess] = []
        for number in range(args.workers):
            name = f"{label}{number}-{ctx.run_id}"
            command = worker_argv(name=name, concurrency=args.concurrency,
                                  loglevel=args.worker_loglevel, app=app)
            child = ChildProcess(f"{label}{number}", command, settings_env(settings),
                                 ctx.log_path(f"{label}{number}"))
            hostname = f"{name}@{socket.gethostname()}"
            stack.callback(child.stop)
            started.append(child.start(lambda name=hostname: _answers_ping(control, name)))
        yield started


def _answers_ping(control: Celery, hostname: str) -> bool:
    # A worker answers remote control only once its consumers run, whatever its log level
    # (the "ready." line is not logged below INFO).
    return bool(control.control.ping(destination=[hostname], timeout=0.5))


@contextmanager
def api_server(ctx: Context, settings: Settings) -> Iterator[tuple[ChildProcess, str]]:
    """``loyalty serve`` on a free port; yields the child and its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    child = ChildProcess("api", [str(BIN / "loyalty"), "serve", "--host", "127.0.0.1",
                                 "--port", str(port)], settings_env(settings),
                         ctx.log_path("api"))
    try:
        child.start(lambda: _healthy(base))
        yield child, base
    finally:
        child.stop()


def _healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def wait_for_count(read: Callable[[], int], target: int, *, what: str,
                   stall_seconds: float = 60, interval: float = 0.05) -> float:
    """Poll until ``read() >= target``; returns the monotonic time it was first seen.

    Gives up only when nothing moves for ``stall_seconds``, so a slow but working machine
    is measured, not failed.
    """
    last, last_change = -1, time.monotonic()
    while True:
        now = time.monotonic()
        current = read()
        if current >= target:
            return now
        if current != last:
            last, last_change = current, now
        elif now - last_change > stall_seconds:
            raise BenchError(f"{what}: stuck at {current} of {target} for {stall_seconds:.0f} s")
        time.sleep(interval)


# --- CPU time, read from /proc (Linux) -------------------------------------------------

def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used since boot (/proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / CLOCK_TICKS


OTHERS = "other processes on the machine"


class CpuMeter:
    """CPU seconds used during a phase by named groups of processes, and by everything else.

    Sources are asked for their pids at both ends, so processes that appear during the
    phase (pool processes, database backends opened on first use) are counted from zero.
    The machine is shared: what other processes used in the meantime is reported too, so
    that a reader can tell a slow phase from a crowded one.
    """

    def __init__(self, sources: dict[str, Callable[[], list[int]]]):
        self.sources = sources
        self._before: dict[str, dict[int, float]] = {}
        self._busy_before = 0.0

    def start(self) -> CpuMeter:
        self._before = {label: {pid: cpu_seconds(pid) for pid in pids()}
                        for label, pids in self.sources.items()}
        self._busy_before = machine_busy_seconds()
        return self

    def used(self) -> dict[str, float]:
        """Call while the processes are still alive: a dead one's CPU time cannot be read."""
        busy = machine_busy_seconds() - self._busy_before
        used = {}
        for label, pids in self.sources.items():
            before = self._before.get(label, {})
            used[label] = sum(cpu_seconds(pid) - before.get(pid, 0.0) for pid in pids())
        used[OTHERS] = max(0.0, busy - sum(used.values()))
        return used


def describe_cpu(used: dict[str, float], wall: float) -> str:
    available = wall * (os.cpu_count() or 1)
    parts = ", ".join(f"{label} {seconds:.1f} s ({seconds / available:.0%})"
                      for label, seconds in sorted(used.items(), key=lambda item: -item[1]))
    return f"CPU used over {wall:.1f} s wall ({available:.0f} CPU-s available): {parts}"


# Above this share of the CPUs taken by others, a phase measured the crowd more than us.
CROWDED = 0.2


def crowding_warning(phase: str, used: dict[str, float], wall: float) -> str | None:
    share = used.get(OTHERS, 0.0) / (wall * (os.cpu_count() or 1))
    if share <= CROWDED:
        return None
    return (f"WARNING: during {phase} other processes took {share:.0%} of the CPUs: "
            f"its figures are low and its ratios unreliable; run again on a quieter machine")
