"""The daily cross-sell scan's selection on a large member base, against the same SQL with
``ix_customers_points`` dropped.

Members are loaded with one ``INSERT … SELECT generate_series`` into the real ``customers``
table of a freshly migrated database: points spread over 0–5000 (half the members uniform
over 0–5000, half over 0–3000, so about a quarter are near a tier), 70 % with a Zalo user
id, and 5 % with a past nudge in the real ``messages`` / ``customer_tags`` tables: about
half of those still inside their tag period (live tag or recent nudge: excluded), the rest
older (tag cleared: selected again), some still pending or failed.

Measured, each the median of ``--scan-repeats`` runs after one warm-up:
- ``run_scan(loyalty, as_of, dry_run=True)``, the service itself: it selects the reachable
  candidates as ORM objects and counts the unreachable ones (both statements), and returns;
- the SQL alone: the two statements ``run_scan`` sent (caught on the engine, with their
  parameters), executed with psycopg and every row fetched, no ORM.

Baseline: the same two statements with ``ix_customers_points`` dropped, inside a
transaction that is rolled back (so the table is read without the index and the index
is back afterwards, not rebuilt). ``SELECT count(*) FROM customers`` is timed too, for scale.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import event

from bench.core import BenchError, Benchmark, Context, env_int
from bench.report import Rate, Result, ratio
from loyalty.bootstrap import Loyalty
from loyalty.program import Program
from loyalty.services.crosssell import run_scan

NAME = "scan"
INDEX = "ix_customers_points"
# A fixed "now" for the scan: the data is laid out around it.
AS_OF = datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh"))
# Members with a past nudge: every NUDGED-th one (all of them reachable).
NUDGED = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument("--members", type=int, default=env_int("BENCH_MEMBERS", 1_000_000),
                       help="members in the customers table (env BENCH_MEMBERS; "
                            "default %(default)s)")
    group.add_argument("--scan-repeats", type=int, default=env_int("BENCH_SCAN_REPEATS", 5),
                       help="timed runs of each query after one warm-up, the median is kept "
                            "(env BENCH_SCAN_REPEATS; default %(default)s)")


# --- loading --------------------------------------------------------------------------

def _tier_case(program: Program) -> str:
    whens = " ".join(f"WHEN p >= {tier.threshold} THEN '{tier.code}'"
                     for tier in sorted(program.tiers, key=lambda t: -t.threshold))
    return f"CASE {whens} END"


def load_members(conninfo: str, program: Program, members: int) -> dict[str, int]:
    """Fill customers, messages and customer_tags; returns row counts by kind."""
    as_of = AS_OF
    local_day = as_of.date()
    tag_days = program.crosssell.tag_days
    with psycopg.connect(conninfo, autocommit=True) as db:
        with db.transaction():
            db.execute("SELECT setseed(0.23)")
            db.execute(f"""
                INSERT INTO customers (id, phone, zalo_user_id, name, birthday, tier, points,
                                       created_at, updated_at)
                SELECT 'C-' || g, '09' || lpad(g::text, 8, '0'),
                       CASE WHEN g %% 10 < 7 THEN (8756431234567890000 + g)::text END,
                       'Khách hàng ' || g, date '1970-01-01' + (g %% 15000),
                       {_tier_case(program)}, p, %(created)s, %(created)s
                FROM (SELECT g, CASE WHEN g %% 2 = 0 THEN floor(random() * 5001)
                                     ELSE floor(random() * 3001) END::bigint AS p
                      FROM generate_series(1, %(n)s) AS g) AS s""",
                       {"n": members, "created": as_of - timedelta(days=400)})
            # Past nudges, one per NUDGED-th member, 0–29 days old: about half inside the
            # tag period. Every 1000th is still pending, every 200th (offset 100) failed.
            db.execute("""
                INSERT INTO messages (kind, customer_id, period, channel, recipient, text,
                                      status, attempts, created_at, updated_at, sent_at,
                                      provider_message_id, enqueued_at)
                SELECT 'nudge', 'C-' || g, %(day)s - d, 'cs', (8756431234567890000 + g)::text,
                       'Chỉ còn vài điểm nữa là lên hạng - Cố lên bạn nhé', status, 1, at, at,
                       CASE WHEN status = 'sent' THEN at END,
                       CASE WHEN status = 'sent' THEN md5(g::text) END, at
                FROM (SELECT g, d, %(as_of)s - make_interval(days => d, hours => 1) AS at,
                             CASE WHEN g %% 1000 = 0 THEN 'pending'
                                  WHEN g %% 200 = 100 THEN 'failed' ELSE 'sent' END AS status
                      FROM (SELECT g, (g / %(every)s) %% 30 AS d
                            FROM generate_series(%(every)s, %(n)s, %(every)s) AS g) AS s0
                     ) AS s""",
                       {"n": members, "every": NUDGED, "day": local_day, "as_of": as_of})
            db.execute("""
                INSERT INTO customer_tags (customer_id, name, message_id, set_at, expires_at,
                                           cleared_at)
                SELECT customer_id, %(tag)s, id, sent_at, sent_at + %(days)s,
                       CASE WHEN sent_at + %(days)s <= %(as_of)s THEN sent_at + %(days)s END
                FROM messages WHERE status = 'sent'""",
                       {"tag": program.crosssell.tag_name, "days": timedelta(days=tag_days),
                        "as_of": as_of})
        # What a database that has run for a while has: statistics and a visibility map.
        db.execute("VACUUM ANALYZE customers, messages, customer_tags")
        row = db.execute("""
            SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM messages),
                   (SELECT count(*) FROM customer_tags WHERE cleared_at IS NULL),
                   (SELECT count(*) FROM customer_tags WHERE cleared_at IS NOT NULL),
                   pg_total_relation_size('customers'), pg_relation_size('customers'),
                   pg_relation_size(%(index)s)""", {"index": INDEX}).fetchone()
    assert row is not None
    keys = ("customers", "nudges", "live tags", "cleared tags", "customers bytes",
            "customers heap bytes", "index bytes")
    return dict(zip(keys, row, strict=True))


# --- measuring ------------------------------------------------------------------------

Statement = tuple[str, Any]


def scan_statements(loyalty: Loyalty, as_of: datetime) -> tuple[list[Statement], Any]:
    """Runs ``run_scan(dry_run=True)`` once and catches the SQL it sends about customers."""
    caught: list[Statement] = []

    def catch(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
              _many: bool) -> None:
        if "FROM customers" in statement:
            caught.append((statement, parameters))

    event.listen(loyalty.engine, "before_cursor_execute", catch)
    try:
        report = run_scan(loyalty, as_of, dry_run=True)
    finally:
        event.remove(loyalty.engine, "before_cursor_execute", catch)
    return caught, report


def timed(repeats: int, action: Callable[[], object]) -> float:
    action()  # warm-up: the table in the OS cache and shared buffers as far as it fits
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def run_sql(db: psycopg.Connection[Any], statements: list[Statement]) -> int:
    rows = 0
    for statement, parameters in statements:
        rows += len(db.execute(statement, parameters).fetchall())
    return rows


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def peak_rss_growth(action: Callable[[], object]) -> int | None:
    """How far this process's peak RSS rose above its RSS before ``action`` (KiB), or None
    where the peak cannot be reset (writing 5 to /proc/self/clear_refs, Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        return None
    before = _status_kib("VmRSS")
    action()
    return _status_kib("VmHWM") - before


def server_ms(plan: list[str]) -> float:
    line = next((line for line in plan if line.startswith("Execution Time:")), "")
    return float(line.split()[2]) if line else float("nan")


def server_time(db: psycopg.Connection[Any], statement: Statement) -> float:
    """The statement's execution time inside PostgreSQL (no rows sent), in seconds."""
    text, parameters = statement
    plan = [row[0] for row in db.execute("EXPLAIN (ANALYZE, TIMING OFF) " + text, parameters)]
    return server_ms(plan) / 1000


def explain(db: psycopg.Connection[Any], statement: Statement) -> list[str]:
    text, parameters = statement
    return [row[0] for row in db.execute("EXPLAIN (ANALYZE, BUFFERS) " + text, parameters)]


def plan_nodes(plan: list[str]) -> str:
    """The scans on customers a plan uses, e.g. 'Bitmap Index Scan on ix_customers_points'."""
    found = []
    for line in plan:
        for node in ("Index Only Scan using", "Index Scan using", "Bitmap Index Scan on",
                     "Seq Scan on", "Parallel Seq Scan on"):
            if node in line and ("customers" in line or INDEX in line):
                found.append(line.strip().lstrip("-> ").split("  ")[0].split(" (")[0])
                break
    return ", ".join(dict.fromkeys(found)) or "?"


def run(ctx: Context) -> Result:
    args = ctx.args
    members = args.members
    url = ctx.new_database("scan")
    loyalty = Loyalty.from_settings(ctx.settings(url))
    result = Result(NAME)
    try:
        started = time.monotonic()
        counts = load_members(ctx.conninfo(url), loyalty.program, members)
        load_seconds = time.monotonic() - started

        statements, report = scan_statements(loyalty, AS_OF)
        if not statements:
            raise BenchError("run_scan sent no statement about customers: has it changed?")
        if len(statements) != 2:
            result.notes.append(f"WARNING: run_scan sent {len(statements)} statements about "
                                "customers, 2 expected (selection and unreachable count)")
        scan_seconds = timed(args.scan_repeats, lambda: run_scan(loyalty, AS_OF, dry_run=True))
        scan_peak = peak_rss_growth(lambda: run_scan(loyalty, AS_OF, dry_run=True))
        with psycopg.connect(ctx.conninfo(url)) as db:
            sql_seconds = timed(args.scan_repeats, lambda: run_sql(db, statements))
            parts = [timed(args.scan_repeats, lambda one=one: run_sql(db, [one]))
                     for one in statements]
            count_seconds = timed(args.scan_repeats,
                                  lambda: db.execute("SELECT count(*) FROM customers").fetchone())
            server_seconds = timed(args.scan_repeats, lambda: server_time(db, statements[0]))
            with_index = explain(db, statements[0])
            count_plan = explain(db, statements[-1])
            db.commit()
            # The baseline: the same statements with no index on points, rolled back after.
            with db.transaction(force_rollback=True):
                db.execute(f"DROP INDEX {INDEX}")
                seq_seconds = timed(args.scan_repeats, lambda: run_sql(db, statements))
                seq_server_seconds = timed(args.scan_repeats,
                                           lambda: server_time(db, statements[0]))
                without_index = explain(db, statements[0])
            selected_rows = run_sql(db, statements[:1])
    finally:
        loyalty.engine.dispose()
    ctx.drop_database(url)

    service = Rate("run_scan(dry_run=True): SQL + ORM objects", members, scan_seconds, "members")
    sql = Rate("  its two statements, rows fetched (psycopg)", members, sql_seconds, "members")
    seq = Rate("baseline: same statements, index dropped", members, seq_seconds, "members")
    server = Rate("selection inside PostgreSQL (EXPLAIN ANALYZE)", members, server_seconds,
                  "members")
    seq_server = Rate("baseline: same in PostgreSQL, index dropped", members,
                      seq_server_seconds, "members")
    count = Rate("for scale: SELECT count(*) FROM customers", members, count_seconds,
                 "members")
    result.rates += [service, sql, seq, server, seq_server, count]
    result.ratios += [ratio("statements, fetched: with index ÷ dropped", sql, seq),
                      ratio("selection in PostgreSQL: with index ÷ dropped", server,
                            seq_server),
                      ratio("run_scan ÷ its statements with the index dropped", service, seq),
                      ratio("run_scan ÷ its statements alone", service, sql)]
    near = report.selected + report.unreachable
    result.notes += [
        f"{counts['customers']:,} members loaded in {load_seconds:.1f} s (INSERT … SELECT "
        f"generate_series, then VACUUM ANALYZE): {counts['nudges']:,} past nudges, "
        f"{counts['live tags']:,} live tags, {counts['cleared tags']:,} cleared; customers "
        f"{counts['customers bytes'] / 2**20:.0f} MiB with indexes (heap "
        f"{counts['customers heap bytes'] / 2**20:.0f} MiB, {INDEX} "
        f"{counts['index bytes'] / 2**20:.0f} MiB)",
        f"scan as of {AS_OF.isoformat()}: selected {report.selected:,} reachable, "
        f"{report.unreachable:,} unreachable ({near / members:.1%} of members near a tier "
        f"and not nudged lately); medians of {args.scan_repeats} after a warm-up",
        f"time per statement: the selection {parts[0]:.2f} s (server execution "
        f"{server_ms(with_index) / 1000:.2f} s in EXPLAIN ANALYZE; the rest is fetching "
        f"{selected_rows:,} rows into Python), the unreachable count "
        f"{parts[-1]:.2f} s; run_scan adds {scan_seconds - sql_seconds:.2f} s for the "
        f"ORM objects"
        + (f" and its peak RSS rose {scan_peak / 1024:.0f} MiB (at least: memory that the "
           f"earlier runs left allocated is not counted)" if scan_peak else ""),
        f"the selection reads customers with: {plan_nodes(with_index)}; without the "
        f"index: {plan_nodes(without_index)}; the unreachable count with: "
        f"{plan_nodes(count_plan)}",
        "EXPLAIN (ANALYZE, BUFFERS) of the selection (run_scan's first statement):\n"
        + "\n".join("      " + line for line in with_index),
        f"the same with {INDEX} dropped:\n"
        + "\n".join("      " + line for line in without_index),
    ]
    return result


BENCHMARK = Benchmark(
    name=NAME,
    summary="cross-sell scan selection on a large member base vs the same SQL without "
            "the points index",
    run=run, add_arguments=add_arguments)
