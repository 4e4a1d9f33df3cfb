"""The cross-sell campaign's results (``loyalty crosssell report``, its HTTP route and the
``/metrics`` counters) over a large member base, against one pass over the tables it reads.

A freshly migrated database is filled with ``INSERT … SELECT generate_series`` into the real
tables: ``--members`` customers, each with ``--history-orders`` earlier orders (credited on
the ledger, every tenth with a tier change, 5 % cancelled); ``--runs`` campaign days ending
on the day of ``AS_OF`` with ``--per-run`` members assigned each (10 % held out; the
nudged have a nudge, 2 % failed, 0.5 % unknown, the rest sent within ten minutes of the
scan); and after each scan, orders from about 12 % of the nudged and 8 % of the held out,
placed 0–95 h later (so some outside the 72 hours), with their ledger credits, the bonus of
the nudged who ordered in time, 3 % cancelled with their reversals, and a tier change for
every third of them.

Measured, each the median of ``--report-repeats`` runs after one warm-up:
- ``campaign_results(loyalty, first day, last day)``, the service the CLI and the API call,
  over every run; and over the last 30 days (the default range);
- ``counts_by_group`` (what ``/metrics`` reads on every scrape): the selected of all time,
  the conversions of the last 30 days.

Baseline: ``SELECT count(*)`` of each table the report reads (assignments, orders, tier
changes, messages), once: what reading them costs, whatever the query. The report needs no
index of its own on PostgreSQL: it joins the days' assignments to orders and tier changes by
hash (EXPLAIN below), and the bonuses come through ``uq_ledger_nudge_kind``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import event

from bench.core import Benchmark, Context, env_int
from bench.report import Rate, Result, ratio
from bench.scan import Statement, explain, run_sql, server_ms, timed
from loyalty.bootstrap import Loyalty
from loyalty.services.campaign_results import campaign_results, counts_by_group
from loyalty.services.stats import RECENT
from loyalty.storage.db import transaction

NAME = "campaign_report"
AS_OF = datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh"))
# What the report reads, each table counted once: the floor of any report over it.
ONE_PASS: list[Any] = [(f"SELECT count(*) FROM {table}", None) for table in (
    "crosssell_assignments", "orders", "tier_changes", "messages")]
TARGET_SECONDS = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument("--report-members", type=int,
                       default=env_int("BENCH_REPORT_MEMBERS", 1_000_000),
                       help="members (env BENCH_REPORT_MEMBERS; default %(default)s)")
    group.add_argument("--runs", type=int, default=env_int("BENCH_REPORT_RUNS", 100),
                       help="campaign days (env BENCH_REPORT_RUNS; default %(default)s)")
    group.add_argument("--per-run", type=int, default=env_int("BENCH_REPORT_PER_RUN", 5_000),
                       help="members selected by each scan (env BENCH_REPORT_PER_RUN; "
                            "default %(default)s)")
    group.add_argument("--history-orders", type=int,
                       default=env_int("BENCH_REPORT_HISTORY", 2),
                       help="earlier orders per member (env BENCH_REPORT_HISTORY; "
                            "default %(default)s)")
    group.add_argument("--report-repeats", type=int,
                       default=env_int("BENCH_REPORT_REPEATS", 5),
                       help="timed runs after one warm-up, the median is kept "
                            "(env BENCH_REPORT_REPEATS; default %(default)s)")


# --- loading --------------------------------------------------------------------------

LOAD = [
    # Members, 400 days old.
    """INSERT INTO customers (id, phone, zalo_user_id, name, tier, points, created_at,
                              updated_at)
       SELECT 'C-' || g, '09' || lpad(g::text, 8, '0'), (8756431234567890000 + g)::text,
              'Khách hàng ' || g, 'silver', 1000 + (g %% 1000), %(long_ago)s, %(long_ago)s
       FROM generate_series(1, %(members)s) AS g""",
    # Earlier orders, over the past 400 days; every 20th cancelled.
    """INSERT INTO orders (order_id, customer_id, status, payment_status, total_payable,
                           shipping_fee, placed_at, occurred_at, earned, reversed, spend,
                           updated_at)
       SELECT 'B-' || g || '-' || k, 'C-' || g,
              CASE WHEN (g + k) %% 20 = 0 THEN 'cancelled' ELSE 'delivered' END, 'paid',
              50000 + (g * 7919 + k * 104729) %% 950000, 0, at, at + interval '2 days', true,
              (g + k) %% 20 = 0,
              CASE WHEN (g + k) %% 20 = 0 THEN 0
                   ELSE 50000 + (g * 7919 + k * 104729) %% 950000 END, at
       FROM generate_series(1::bigint, %(members)s) AS g, generate_series(1, %(history)s) AS k,
            LATERAL (SELECT %(as_of)s - make_interval(
                         secs => ((g * 2654435761 + k * 40503) %% 34560000)::float8)) AS t(at)""",
    # Each scan's members: 10 % held out.
    """INSERT INTO crosssell_assignments (period, customer_id, held_out, points,
                                          next_threshold, assigned_at, window_ends_at,
                                          period_ends_at)
       SELECT %(first_day)s + d, 'C-' || (((d * %(per_run)s + k - 1) %% %(members)s) + 1),
              (k * 7 + d) %% 10 = 0, 1850, 2000, at, at + interval '72 hours',
              at + interval '15 days'
       FROM generate_series(0, %(runs)s - 1) AS d, generate_series(1, %(per_run)s) AS k,
            LATERAL (SELECT %(as_of)s - make_interval(days => (%(runs)s - 1 - d)::int)) AS t(at)""",
    # The nudges of the nudged.
    """INSERT INTO messages (kind, customer_id, period, channel, recipient, text, status,
                             attempts, created_at, updated_at, sent_at)
       SELECT 'nudge', a.customer_id, a.period, 'cs', c.zalo_user_id, 'Chỉ còn vài điểm…',
              s.status, 1, a.assigned_at, a.assigned_at,
              CASE WHEN s.status = 'sent'
                   THEN a.assigned_at + make_interval(secs => a.id %% 600) END
       FROM crosssell_assignments a JOIN customers c ON c.id = a.customer_id,
            LATERAL (SELECT CASE WHEN a.id %% 50 = 0 THEN 'failed'
                                 WHEN a.id %% 200 = 1 THEN 'unknown'
                                 ELSE 'sent' END) AS s(status)
       WHERE NOT a.held_out""",
    # Orders after the scan: 12 % of the nudged, 8 % of the held out, 0-95 h after it;
    # 3 % cancelled.
    """INSERT INTO orders (order_id, customer_id, status, payment_status, total_payable,
                           shipping_fee, placed_at, occurred_at, earned, reversed, spend,
                           updated_at)
       SELECT 'A-' || a.id, a.customer_id,
              CASE WHEN a.id %% 33 = 0 THEN 'cancelled' ELSE 'delivered' END, 'paid',
              100000 + (a.id * 7919) %% 800000, 0, placed, placed + interval '30 hours',
              true, a.id %% 33 = 0,
              CASE WHEN a.id %% 33 = 0 THEN 0 ELSE 100000 + (a.id * 7919) %% 800000 END,
              placed
       FROM crosssell_assignments a,
            LATERAL (SELECT a.assigned_at
                            + make_interval(hours => (a.id %% 96)::int)) AS t(placed)
       WHERE (a.id * 13) %% 100 < CASE WHEN a.held_out THEN 8 ELSE 12 END""",
    # Every order credited on the ledger.
    """INSERT INTO ledger_entries (customer_id, kind, points, order_id, tier, multiplier,
                                   balance_after, created_at)
       SELECT customer_id, 'order_credit', total_payable / 1000, order_id, 'silver', '1.2',
              0, occurred_at
       FROM orders""",
    """INSERT INTO ledger_entries (customer_id, kind, points, order_id, tier, multiplier,
                                   balance_after, created_at)
       SELECT customer_id, 'order_reversal', -(total_payable / 1000), order_id, 'silver',
              '1.2', 0, occurred_at + interval '1 day'
       FROM orders WHERE reversed""",
    # The bonus of the nudged who ordered within 72 h of a sent nudge, and its reversal.
    """INSERT INTO ledger_entries (customer_id, kind, points, order_id, nudge_id, tier,
                                   multiplier, balance_after, created_at)
       SELECT o.customer_id, k.kind,
              CASE WHEN k.kind = 'crosssell_bonus' THEN 100 ELSE -100 END,
              o.order_id, m.id, 'silver', '1', 0, o.occurred_at
       FROM crosssell_assignments a
       JOIN messages m ON m.kind = 'nudge' AND m.customer_id = a.customer_id
                      AND m.period = a.period AND m.status = 'sent'
       JOIN orders o ON o.order_id = 'A-' || a.id
                    AND o.placed_at <= m.sent_at + interval '72 hours',
            LATERAL (VALUES ('crosssell_bonus'), ('crosssell_bonus_reversal')) AS k(kind)
       WHERE k.kind = 'crosssell_bonus' OR o.reversed""",
    # Tier changes: every third order after a scan, every tenth earlier one.
    """INSERT INTO tier_changes (customer_id, from_tier, to_tier, points, ledger_entry_id,
                                 changed_at)
       SELECT l.customer_id, 'silver', 'gold', 2050, l.id, l.created_at
       FROM ledger_entries l
       WHERE l.kind = 'order_credit'
         AND ((l.order_id LIKE 'A-%%' AND l.id %% 3 = 0) OR l.id %% 10 = 0)""",
]
COUNTS = """
    SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM orders),
           (SELECT count(*) FROM ledger_entries), (SELECT count(*) FROM tier_changes),
           (SELECT count(*) FROM crosssell_assignments), (SELECT count(*) FROM messages)"""


def load(conninfo: str, args: argparse.Namespace) -> dict[str, int]:
    parameters = {"members": args.report_members, "history": args.history_orders,
                  "runs": args.runs, "per_run": args.per_run,
                  "first_day": AS_OF.date() - timedelta(days=args.runs - 1), "as_of": AS_OF,
                  "long_ago": AS_OF - timedelta(days=400)}
    with psycopg.connect(conninfo, autocommit=True) as db:
        with db.transaction():
            for statement in LOAD:
                db.execute(statement, parameters)
        db.execute("VACUUM ANALYZE")
        row = db.execute(COUNTS).fetchone()
    assert row is not None
    keys = ("customers", "orders", "ledger rows", "tier changes", "assignments", "nudges")
    return dict(zip(keys, row, strict=True))


# --- measuring ------------------------------------------------------------------------

def caught_statements(loyalty: Loyalty, action: Callable[[], object]) -> list[Statement]:
    caught: list[Statement] = []

    def catch(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
              _many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            caught.append((statement, parameters))

    event.listen(loyalty.engine, "before_cursor_execute", catch)
    try:
        action()
    finally:
        event.remove(loyalty.engine, "before_cursor_execute", catch)
    return caught


def first_words(statement: Statement) -> str:
    """What a statement counts, for the notes: the aggregate of its first output column."""
    text = " ".join(statement[0].split())
    return text[:90] + ("…" if len(text) > 90 else "")


def run(ctx: Context) -> Result:
    args = ctx.args
    url = ctx.new_database("report")
    loyalty = Loyalty.from_settings(ctx.settings(url))
    loyalty = replace(loyalty, clock=lambda: AS_OF + timedelta(hours=1))
    first_day = AS_OF.date() - timedelta(days=args.runs - 1)
    last_day = AS_OF.date()
    result = Result(NAME)
    try:
        started = time.monotonic()
        counts = load(ctx.conninfo(url), args)
        load_seconds = time.monotonic() - started

        def everything() -> object:
            return campaign_results(loyalty, first_day, last_day)

        def last_30_days() -> object:
            return campaign_results(loyalty, last_day - timedelta(days=29), last_day)

        def metrics() -> object:
            with transaction(loyalty.sessions) as session:
                return counts_by_group(session, AS_OF - RECENT)

        report = campaign_results(loyalty, first_day, last_day)
        full_seconds = timed(args.report_repeats, everything)
        recent_seconds = timed(args.report_repeats, last_30_days)
        metrics_seconds = timed(args.report_repeats, metrics)
        statements = caught_statements(loyalty, everything)
        with psycopg.connect(ctx.conninfo(url)) as db:
            plans = [explain(db, statement) for statement in statements]
            sql_seconds = timed(args.report_repeats, lambda: run_sql(db, statements))
            baseline_seconds = timed(args.report_repeats, lambda: run_sql(db, ONE_PASS))
    finally:
        loyalty.engine.dispose()
    ctx.drop_database(url)

    assigned = counts["assignments"]
    full = Rate(f"campaign_results, all {args.runs} runs", assigned, full_seconds,
                "members")
    sql = Rate("  its statements alone (psycopg)", assigned, sql_seconds, "members")
    baseline = Rate("baseline: count(*) of each table it reads, once", assigned,
                    baseline_seconds, "members")
    recent = Rate("campaign_results, last 30 runs (the default range)",
                  min(assigned, 30 * args.per_run), recent_seconds, "members")
    scrape = Rate("counts_by_group (/metrics): all time, converted in 30 days", assigned,
                  metrics_seconds, "members")
    result.rates += [full, sql, baseline, recent, scrape]
    result.ratios += [ratio("report ÷ one pass over its tables", full, baseline)]
    verdict = "under" if full_seconds < TARGET_SECONDS else "OVER"
    totals = report.nudged, report.held_out
    result.notes += [
        f"{verdict} the {TARGET_SECONDS:.0f} s target: the whole report over {args.runs} "
        f"runs in {full_seconds:.2f} s",
        f"loaded in {load_seconds:.0f} s: " + ", ".join(
            f"{count:,} {name}" for name, count in counts.items()),
        f"report: nudged {totals[0].members:,} (converted {totals[0].converted:,}), held out "
        f"{totals[1].members:,} (converted {totals[1].converted:,}); uplift "
        f"{report.uplift.conversion:+.4f}, 95% interval {report.uplift.ci95}",
        "server execution time per statement (EXPLAIN ANALYZE): "
        + "; ".join(f"{server_ms(plan) / 1000:.2f} s" for plan in plans),
    ]
    for statement, plan in zip(statements, plans, strict=True):
        result.notes.append(f"EXPLAIN (ANALYZE, BUFFERS) of {first_words(statement)}\n"
                            + "\n".join("      " + line for line in plan))
    return result


BENCHMARK = Benchmark(
    name=NAME,
    summary="cross-sell campaign results (report, /metrics) over 1M members and 100 runs vs "
            "one pass over the tables they read",
    run=run, add_arguments=add_arguments)
