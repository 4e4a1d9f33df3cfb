"""The import rate of historical events, against plain batched INSERTs of the same rows.

Measured: ``loyalty events import FILE`` (the command ops run at launch) on a JSON-lines
file, into a fresh migrated database, wall clock including the command's start-up.

Baseline: the same file read and parsed line by line, and its events inserted as rows of a
trivial one-table schema with psycopg ``executemany``, in transactions of the importer's
own batch size. So the ratio is what applying the loyalty rules costs over merely storing
the events.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import psycopg

from bench.core import ROOT, BenchError, Benchmark, Context, env_int
from bench.eventgen import order_events
from bench.order_events import END_TO_END
from bench.procs import (
    BIN,
    OTHERS,
    cpu_seconds,
    crowding_warning,
    describe_cpu,
    machine_busy_seconds,
)
from bench.report import Rate, Result, ratio
from devtools.processes import settings_env
from loyalty.services.importing import BATCH

NAME = "import"
IMPORTED = "loyalty events import FILE"

TRIVIAL_SCHEMA = """
CREATE TABLE order_events_raw (
    event_id text PRIMARY KEY,
    order_id text NOT NULL,
    customer_id text NOT NULL,
    status text NOT NULL,
    payment_status text NOT NULL,
    total_payable bigint NOT NULL,
    shipping_fee bigint NOT NULL,
    placed_at timestamptz NOT NULL,
    occurred_at timestamptz NOT NULL
)"""
INSERT = "INSERT INTO order_events_raw VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument("--import-events", type=int, default=env_int("BENCH_IMPORT_EVENTS", 20000),
                       help="historical events in the file (env BENCH_IMPORT_EVENTS; "
                            "default %(default)s)")
    group.add_argument("--import-customers", type=int,
                       default=env_int("BENCH_IMPORT_CUSTOMERS", 3000),
                       help="distinct customers in it (env BENCH_IMPORT_CUSTOMERS; "
                            "default %(default)s)")


def write_history(path: Path, count: int, customers: int) -> None:
    events = order_events(count, customers=customers, seed=2, prefix="hist")
    with path.open("w", encoding="utf-8") as out:
        for event in events:
            out.write(json.dumps(event, ensure_ascii=False) + "\n")


def _row(event: dict[str, Any]) -> tuple[Any, ...]:
    return (event["event_id"], event["order_id"], event["customer"]["id"], event["status"],
            event["payment_status"], event["total_payable"], event["shipping_fee"],
            event["placed_at"], event["occurred_at"])


def plain_inserts(ctx: Context, path: Path, count: int) -> Rate:
    url = ctx.new_database("rows", migrate=False)
    with psycopg.connect(ctx.conninfo(url)) as db:
        db.execute(TRIVIAL_SCHEMA)
        db.commit()
        started = time.monotonic()
        with path.open(encoding="utf-8") as lines:
            while batch := list(islice(lines, BATCH)):
                with db.transaction(), db.cursor() as cursor:
                    cursor.executemany(INSERT, [_row(json.loads(line)) for line in batch])
        seconds = time.monotonic() - started
        stored = db.execute("SELECT count(*) FROM order_events_raw").fetchone()
    ctx.drop_database(url)
    if not stored or stored[0] != count:
        raise BenchError(f"baseline stored {stored} rows, not {count}")
    return Rate(f"baseline: plain INSERTs, executemany × {BATCH}", count, seconds, "rows")


@dataclass
class Imported:
    rate: Rate
    cpu: dict[str, float]
    summary: str


def import_command(ctx: Context, path: Path, count: int) -> Imported:
    """Runs the CLI, sampling the CPU time of its PostgreSQL backend while it runs (a
    backend's counters vanish with it)."""
    url = ctx.new_database("import")
    log_path = ctx.log_path("import")
    deadline = time.monotonic() + max(600, count / 10)
    backend: dict[int, float] = {}
    busy_before = machine_busy_seconds()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with psycopg.connect(ctx.conninfo(url), autocommit=True) as db, \
            log_path.open("w") as log, \
            subprocess.Popen([str(BIN / "loyalty"), "events", "import", str(path)], cwd=ROOT,
                             env=settings_env(ctx.settings(url)), stdout=log,
                             stderr=subprocess.STDOUT, text=True) as command:
        try:
            while command.poll() is None:
                for (pid,) in db.execute("SELECT pid FROM pg_stat_activity WHERE datname ="
                                         " current_database() AND pid <> pg_backend_pid()"):
                    backend[pid] = max(backend.get(pid, 0.0), cpu_seconds(pid))
                if time.monotonic() > deadline:
                    raise BenchError(f"import still running after {deadline - started:.0f} s")
                time.sleep(0.25)
        except BaseException:
            command.kill()
            raise
    seconds = time.monotonic() - started
    busy = machine_busy_seconds() - busy_before
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = log_path.read_text(errors="replace")
    if command.returncode != 0:
        raise BenchError(f"import failed ({command.returncode}): {output[-2000:]}")
    with psycopg.connect(ctx.conninfo(url)) as db:
        row = db.execute("SELECT (SELECT count(*) FROM processed_events),"
                         " (SELECT count(*) FROM rejected_events)").fetchone()
    ctx.drop_database(url)
    if not row or row[0] + row[1] != count:
        raise BenchError(f"import left {row} processed/refused rows for {count} events")
    own = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    database = sum(backend.values())
    cpu = {"import command": own, "its PostgreSQL backend": database,
           OTHERS: max(0.0, busy - own - database)}
    summary = next((line for line in output.splitlines() if line.startswith("read ")), "?")
    return Imported(Rate(IMPORTED, count, seconds), cpu, summary)


def run(ctx: Context) -> Result:
    args = ctx.args
    path = ctx.workdir / "history.jsonl"
    write_history(path, args.import_events, args.import_customers)
    result = Result(NAME)
    baseline = plain_inserts(ctx, path, args.import_events)
    done = import_command(ctx, path, args.import_events)
    imported = done.rate
    result.rates += [imported, baseline]
    result.ratios.append(ratio("import ÷ plain INSERTs", imported, baseline))
    result.notes += [
        f"{args.import_events:,} events, {args.import_customers:,} customers, "
        f"{path.stat().st_size / 1e6:.1f} MB of JSON lines; the command said: {done.summary}",
        "import " + describe_cpu(done.cpu, imported.seconds)]
    result.notes += filter(None, [crowding_warning("the import", done.cpu, imported.seconds)])
    live = ctx.results.get("order-events")
    live_rate = live.rate(END_TO_END) if live else None
    if live_rate:
        result.ratios.append(ratio("import ÷ live end-to-end path (same run)", imported,
                                   live_rate))
    return result


BENCHMARK = Benchmark(
    name=NAME,
    summary="historical import events/s (loyalty events import) vs plain batched INSERTs",
    run=run, add_arguments=add_arguments)
