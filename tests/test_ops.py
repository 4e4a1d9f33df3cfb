"""What ops rely on: /healthz through outages, logs that are useful and safe, counters."""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from celery import Celery
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from devtools.processes import ROOT, WorkerProcess, settings_env, wait_for
from loyalty.api import create_app
from loyalty.bootstrap import Loyalty
from loyalty.domain.orders import Outcome
from loyalty.logs import JsonFormatter
from loyalty.queueing import APPLY_ORDER_EVENT, ORDER_EVENTS
from loyalty.services.events import handle_order_event
from loyalty.services.stats import read_stats, stats_json
from loyalty.settings import Settings
from tests.conftest import BACKEND
from tests.support.db import processed_count, refused_count
from tests.support.events import order_event
from tests.support.tcp_proxy import TcpProxy

PHONE = "0901234567"
MASKED_PHONE = "*******567"
SECRETS = ("test-webhook-secret", "test-api-token")  # the values of the settings fixture
TOKEN = {"Authorization": f"Bearer {SECRETS[1]}"}


# --- /healthz through outages ------------------------------------------------------------

def _through(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    credentials, at, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{credentials}{at}127.0.0.1:{proxy.port}"))


@pytest.mark.services_only
@pytest.mark.skipif(BACKEND == "embedded", reason="needs PostgreSQL and Redis over TCP")
def test_healthz_answers_503_while_redis_or_postgres_is_down(migrated: Settings) -> None:
    assert migrated.database_url and migrated.redis_url
    database = make_url(migrated.database_url)
    broker = urlsplit(migrated.redis_url)
    assert database.host and database.port and broker.hostname and broker.port
    with TcpProxy(database.host, database.port) as postgres, \
            TcpProxy(broker.hostname, broker.port) as redis_proxy:
        proxied = migrated.model_copy(update={
            "database_url": database.set(host="127.0.0.1", port=postgres.port)
            .render_as_string(hide_password=False),
            "redis_url": _through(migrated.redis_url, redis_proxy)})
        loyalty = Loyalty.from_settings(proxied)
        try:
            client = TestClient(create_app(loyalty))

            def health() -> tuple[int, dict[str, str]]:
                answer = client.get("/healthz")
                return answer.status_code, answer.json()

            assert health() == (200, {"database": "ok", "redis": "ok"})

            redis_proxy.stop()
            assert health() == (503, {"database": "ok", "redis": "down"})
            redis_proxy.start()
            assert health() == (200, {"database": "ok", "redis": "ok"})

            # The pool holds a live connection through the proxy: stop() cuts it, as a
            # database restart would, and the next check must notice.
            postgres.stop()
            assert health() == (503, {"database": "down", "redis": "ok"})
            assert _scrape(client)[("loyalty_stats_up", ())] == 0
            postgres.start()
            assert health() == (200, {"database": "ok", "redis": "ok"})
            assert _scrape(client)[("loyalty_stats_up", ())] == 1
        finally:
            loyalty.engine.dispose()


def test_tcp_proxy_cuts_live_connections_and_comes_back_on_the_same_port() -> None:
    with socket.socket() as echo:
        echo.bind(("127.0.0.1", 0))
        echo.listen()

        def serve() -> None:
            while True:
                try:
                    connection, _ = echo.accept()
                except OSError:
                    return
                with connection:
                    while data := connection.recv(1024):
                        connection.sendall(data)

        threading.Thread(target=serve, daemon=True).start()
        proxy = TcpProxy(*echo.getsockname()).start()
        try:
            with socket.create_connection(proxy.address, timeout=2) as client:
                client.sendall(b"ping")
                assert client.recv(4) == b"ping"
                proxy.stop()
                assert client.recv(4) == b""  # the live connection was closed
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(proxy.address, timeout=2)
            proxy.start()
            with socket.create_connection(proxy.address, timeout=2) as client:
                client.sendall(b"pong")
                assert client.recv(4) == b"pong"
        finally:
            proxy.stop()


# --- logs --------------------------------------------------------------------------------

def _json_lines(paths: list[Path]) -> list[dict[str, Any]]:
    lines = []
    for path in paths:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    continue
    return lines


def _line_of(paths: list[Path], event_id: str) -> dict[str, Any] | None:
    return next((line for line in _json_lines(paths) if line.get("event_id") == event_id),
                None)


@pytest.mark.workers
def test_worker_logs_each_event_with_its_ids_and_no_phone_or_secret(
        loyalty: Loyalty, workers: list[WorkerProcess], celery_sender: Celery) -> None:
    good = order_event("SO-LOG-1", "C-LOG", phone=PHONE, name="Lan")
    # Sent straight onto the queue, as a producer that skips validation would: the worker
    # refuses it, and its log line must not leak the phone either.
    bad = {**order_event("SO-LOG-2", "C-LOG", phone=PHONE), "total_payable": "1250000"}
    for event in (good, bad):
        celery_sender.send_task(APPLY_ORDER_EVENT, args=[event], queue=ORDER_EVENTS)
    wait_for(lambda: processed_count(loyalty) >= 1 and refused_count(loyalty) >= 1, 60,
             "the workers did not handle both events")
    logs = [worker.log_path for worker in workers]
    wait_for(lambda: _line_of(logs, good["event_id"]) is not None
             and _line_of(logs, bad["event_id"]) is not None, 10,
             "no log line names the events")

    for event, outcome in ((good, "earned"), (bad, "refused")):
        line = _line_of(logs, event["event_id"])
        assert line is not None
        assert (line["order_id"], line["customer_id"], line["outcome"]) == \
            (event["order_id"], "C-LOG", outcome)
        assert isinstance(line["ms"], int | float) and 0 <= line["ms"] < 60_000

    text = "".join(path.read_text(encoding="utf-8", errors="replace") for path in logs)
    assert PHONE not in text and "84" + PHONE[1:] not in text
    for secret in SECRETS:
        assert secret not in text


def _format(message: str, *args: Any, **extra: Any) -> str:
    record = logging.LogRecord("loyalty.test", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return JsonFormatter().format(record)


def test_json_formatter_masks_phones_in_the_message_and_in_extra_fields() -> None:
    line = _format("calling %s", PHONE, phone=PHONE,
                   customer={"id": "C-1", "phone": "+84901234567"})
    assert PHONE not in line and "84901234567" not in line
    entry = json.loads(line)
    assert entry["message"] == f"calling {MASKED_PHONE}"
    assert entry["phone"] == MASKED_PHONE
    assert entry["customer"] == {"id": "C-1", "phone": "*********567"}


def test_json_formatter_does_not_reveal_secret_settings(settings: Settings) -> None:
    line = _format("started with %s", settings, settings=settings)
    for secret in SECRETS:
        assert secret not in line
    assert "database_url" in line  # the settings were logged, only their secrets hidden


# --- counters: `loyalty stats --json` and /metrics ----------------------------------------

def _cli_stats(settings: Settings, *args: str) -> str:
    done = subprocess.run([str(Path(sys.executable).parent / "loyalty"), "stats", *args],
                          cwd=ROOT, env=settings_env(settings), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(exposition)
            for sample in family.samples}


def _scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    # As Prometheus scrapes it: with the shop-wide token.
    answer = client.get("/metrics", headers=TOKEN)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return _samples(answer.text)


def _changes(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
             ) -> dict[str, dict[str, int]]:
    changes: dict[str, dict[str, int]] = {}
    for name, values in after.items():
        for key, number in values.items():
            delta = number - before.get(name, {}).get(key, 0)
            if delta:
                changes.setdefault(name, {})[key] = delta
    return changes


def test_stats_and_metrics_count_applied_duplicate_and_refused_events(
        loyalty: Loyalty, migrated: Settings, request: pytest.FixtureRequest) -> None:
    api = Loyalty.from_settings(migrated)
    request.addfinalizer(api.engine.dispose)
    client = TestClient(create_app(api))
    before = stats_json(read_stats(loyalty))  # in-process: the CLI is checked after
    scraped_before = _scrape(client)

    earn = order_event("SO-S1", "C-S1", at=0)
    outcomes = [handle_order_event(loyalty, raw, source="test").outcome for raw in (
        earn, earn,  # the second delivery of one event is a duplicate
        order_event("SO-S1", "C-S1", "returned", "refunded", at=10),
        order_event("SO-S2", "C-S2", total=1_030_000, shipping=30_000),
        order_event("SO-S3", "C-S3", "pending", "unpaid"),
        {**order_event("SO-S4", "C-S4"), "status": "lost"})]
    assert outcomes == [Outcome.EARNED, Outcome.DUPLICATE, Outcome.REVERSED, Outcome.EARNED,
                        Outcome.UPDATED, Outcome.REFUSED]

    after = json.loads(_cli_stats(migrated, "--json"))
    assert _changes(before, after) == {
        # Five deliveries applied minus the duplicate; the refused one is counted apart.
        "events": {"applied": 4, "duplicate": 1, "refused": 1},
        "applied_events": {"earned": 2, "reversed": 1, "updated": 1},
        "refused_events_waiting": {"test": 1},
        "ledger_points": {"order_credit": 1220 + 1000, "order_reversal": 1220},
        "ledger_entries": {"order_credit": 2, "order_reversal": 1},
        "members": {"member": 2, "silver": 1},
    }
    assert set(after["members"]) == {"member", "silver", "gold", "diamond"}

    scraped = _scrape(client)
    assert scraped[("loyalty_stats_up", ())] == 1
    for (name, labels), value in {
            ("loyalty_events_total", (("outcome", "applied"),)): 4,
            ("loyalty_events_total", (("outcome", "duplicate"),)): 1,
            ("loyalty_events_total", (("outcome", "refused"),)): 1,
            ("loyalty_applied_events_total", (("result", "earned"),)): 2,
            ("loyalty_ledger_points_total", (("kind", "order_reversal"),)): 1220,
            ("loyalty_members", (("tier", "silver"),)): 1}.items():
        assert scraped[(name, labels)] - scraped_before.get((name, labels), 0) == value, name
    # Prometheus computes rates of counters only; members per tier go up and down.
    types = {sample.name: family.type
             for family in text_string_to_metric_families(
                 client.get("/metrics", headers=TOKEN).text)
             for sample in family.samples}
    assert types["loyalty_events_total"] == "counter"
    assert types["loyalty_members"] == "gauge"

    readable = _cli_stats(migrated)
    assert "order events by outcome:" in readable
    assert re.search(rf"^  applied +{after['events']['applied']:,}$", readable, re.MULTILINE)
    assert re.search(rf"^  duplicate +{after['events']['duplicate']:,}$", readable, re.MULTILINE)
