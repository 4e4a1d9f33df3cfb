"""``GET /v1/me`` with the token cache warm, against a bare FastAPI route in the same run.

Setup: a fresh migrated database with one member who has ``--me-ledger`` ledger rows, a live
tag and a sent nudge (so the view computes tags, total spent and the offer), a ``FakeZalo``
in this process playing the Graph API, and ``loyalty serve`` pointed at it. One request signs
the member in (one Graph call, the link made); every measured request then finds the token in
Redis and reads the database: the link, the member, tags, spend, the offer.

Baseline: ``python -m uvicorn bench.bare_app:app``, a sync route that reads the same header
and answers a constant, with uvicorn's access log on as ``loyalty serve`` has it.

The client is this process: ``--me-connections`` threads, each on one keep-alive connection,
for ``--me-seconds``; bare and ``/v1/me`` alternate twice and the better run of each counts
(the machine is shared). The client's own CPU is reported: when it is near one core, the
rates are the client's and the ratio is too kind to the slower server.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import urlsplit

from pydantic import SecretStr

from bench.core import BenchError, Benchmark, Context, env_int
from bench.procs import api_server
from bench.report import Rate, Result, ratio
from devtools.fake_zalo import GRAPH_ME_PATH, FakeZalo
from devtools.processes import ChildProcess, free_port, settings_env
from loyalty.bootstrap import Loyalty
from loyalty.storage.db import transaction
from loyalty.storage.tables import Customer, CustomerTag, LedgerEntry, Message

NAME = "member-page"
SECRET = "bench-miniapp-secret"
BARE = "baseline: bare FastAPI route"
ME = "GET /v1/me, token cache warm"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument("--me-seconds", type=int, default=env_int("BENCH_ME_SECONDS", 10),
                       help="seconds of each measured run (env BENCH_ME_SECONDS; "
                            "default %(default)s)")
    group.add_argument("--me-connections", type=int,
                       default=env_int("BENCH_ME_CONNECTIONS", 8),
                       help="client threads, one keep-alive connection each "
                            "(env BENCH_ME_CONNECTIONS; default %(default)s)")
    group.add_argument("--me-ledger", type=int, default=env_int("BENCH_ME_LEDGER", 50),
                       help="ledger rows of the signed-in member (env BENCH_ME_LEDGER; "
                            "default %(default)s)")


def _member(loyalty: Loyalty, rows: int) -> None:
    now = loyalty.clock()
    with transaction(loyalty.sessions) as session:
        session.add(Customer(id="C-BENCH", zalo_user_id="oa-bench", phone="0901234567",
                             name="Lan", tier="silver", points=rows * 30, created_at=now,
                             updated_at=now))
        session.flush()
        for n in range(rows):
            session.add(LedgerEntry(customer_id="C-BENCH", kind="order_credit", points=30,
                                    order_id=f"SO-{n}", tier="member", multiplier="1.0",
                                    balance_after=30 * (n + 1), created_at=now))
        nudge = Message(kind="nudge", customer_id="C-BENCH", channel="cs",
                        recipient="oa-bench", text="nudge", status="sent", attempts=1,
                        created_at=now, updated_at=now, sent_at=now - timedelta(hours=1))
        session.add(nudge)
        session.flush()
        session.add(CustomerTag(customer_id="C-BENCH", name="Đã gửi tin", message_id=nudge.id,
                                set_at=now, expires_at=now + timedelta(days=15)))


@contextmanager
def _bare_server(ctx: Context) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    child = ChildProcess("bare", [sys.executable, "-m", "uvicorn", "bench.bare_app:app",
                                  "--host", "127.0.0.1", "--port", str(port),
                                  "--log-level", "info"], settings_env(ctx.settings(None)),
                         ctx.log_path("bare"))
    try:
        child.start(lambda: _get_ok(base + "/bare"))
        yield base
    finally:
        child.stop()


def _get_ok(url: str) -> bool:
    parts = urlsplit(url)
    try:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
        connection.request("GET", parts.path)
        return connection.getresponse().status == 200
    except OSError:
        return False


def _hammer(label: str, url: str, token: str, seconds: float,
            connections: int) -> tuple[Rate, float]:
    """Requests answered 200 in ``seconds``, and the client's CPU seconds meanwhile."""
    parts = urlsplit(url)
    counts = [0] * connections
    failures: list[str] = []
    start = threading.Barrier(connections + 1)
    stop_at = [0.0]

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        headers = {"X-Zalo-Access-Token": token}
        start.wait()
        while time.monotonic() < stop_at[0]:
            connection.request("GET", parts.path, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                failures.append(f"{response.status}")
                return
            counts[index] += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    cpu_before, began = time.process_time(), time.monotonic()
    stop_at[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    wall, cpu = time.monotonic() - began, time.process_time() - cpu_before
    if failures:
        raise BenchError(f"{label}: answered {failures[0]}")
    return Rate(label, sum(counts), wall, unit="requests"), cpu


def run(ctx: Context) -> Result:
    args = ctx.args
    result = Result(NAME)
    database = ctx.new_database("me")
    with FakeZalo(miniapp_secret_key=SECRET) as zalo:
        settings = ctx.settings(database).model_copy(update={
            "zalo_graph_url": zalo.url, "miniapp_secret_key": SecretStr(SECRET)})
        loyalty = Loyalty.from_settings(settings)
        _member(loyalty, args.me_ledger)
        loyalty.engine.dispose()
        token = zalo.mint_user_token("app-bench", oa_user_id="oa-bench")
        with api_server(ctx, settings) as (_api, base), _bare_server(ctx) as bare_base:
            # Signs the member in: the one Graph call, and the link made.
            runs = [_hammer("warm-up", base + "/v1/me", token, 1.0, 1)]
            for _round in range(2):
                for label, url in [(BARE, bare_base + "/bare"), (ME, base + "/v1/me")]:
                    runs.append(_hammer(label, url, token, args.me_seconds,
                                        args.me_connections))
        graph_calls = sum(1 for path, _ in zalo.access_log if path == GRAPH_ME_PATH)
    best = {label: max((run for run in runs if run[0].label == label),
                       key=lambda run: run[0].per_second) for label in (BARE, ME)}
    bare, me = best[BARE], best[ME]
    result.rates += [bare[0], me[0]]
    result.ratios.append(ratio("/v1/me ÷ bare route (goal ≥ 0.4)", me[0], bare[0]))
    signed_in = sum(run[0].count for run in runs if run[0].label != BARE)
    result.notes.append(f"Graph /v2.0/me calls during the run: {graph_calls} "
                        f"(for {signed_in:,} signed-in requests)")
    for label, (rate, cpu) in best.items():
        result.notes.append(f"client CPU during '{label}': {cpu:.1f} s over {rate.seconds:.1f} s"
                            + ("  (client-bound: the ratio is too kind)"
                               if cpu > 0.85 * rate.seconds else ""))
    if graph_calls != 1:
        raise BenchError(f"expected one Graph call with the cache warm, saw {graph_calls}")
    return result


BENCHMARK = Benchmark(NAME, "GET /v1/me (token cache warm) vs a bare FastAPI route",
                      run, add_arguments)
