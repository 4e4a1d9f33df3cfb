"""No phone number in clear in any log line of any process: the masking covers every logger
(ours, uvicorn's, Celery's, a crash of a command) and every phone format events accept, and
database errors never quote the values of their statement."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from celery import Celery

from devtools.processes import ROOT, ChildProcess, WorkerProcess, settings_env, wait_for
from loyalty.api import signature_of
from loyalty.bootstrap import Loyalty
from loyalty.logs import mask_phones_in
from loyalty.queueing import ORDER_EVENTS
from tests.support.events import order_event
from tests.support.faults import INJECTED, failing_writes
from tests.support.privacy import NAME, PHONES, leaks, spellings
from tests.support.tcp_proxy import free_port


def assert_json_lines(log: str) -> None:
    """Every line went through the JSON formatter: none was written around the masking."""
    for line in log.splitlines():
        if line.strip():
            json.loads(line)


# --- the masking itself --------------------------------------------------------------------

@pytest.mark.parametrize("phone", PHONES)
@pytest.mark.parametrize("context", [
    "{}",
    'customer {"id": "C-1", "phone": "{}", "name": "Lan"}',  # a payload inside an error
    "[parameters: ('C-1', '{}', 'Lan')]",
    "DETAIL:  Key (phone)=({}) already exists.",
    "GET /v1/members/{}?x=1",
    'line one\\n{}\\nline three',  # after a JSON escape, as a formatted line holds it
    "call {}.",
    "tel:{},{}",
])
def test_every_phone_format_is_masked_wherever_it_stands(phone: str, context: str) -> None:
    masked = mask_phones_in(context.replace("{}", phone))
    assert not any(spelling in masked for spelling in spellings(phone)), masked
    assert phone[-3:] in masked  # the last three digits stay, to tell customers apart


def test_a_phone_encoded_in_a_url_is_masked() -> None:
    assert mask_phones_in("GET /v1/members/%2B6591234567") == "GET /v1/members/%2B*******567"


@pytest.mark.parametrize("kept", [
    "2026-11-20T10:00:00+07:00",  # ISO times
    "2026-11-20T03:00:00.123456+00:00",
    "evt-000123", "SO-1001", "C-42",  # ids of SPEC §3
    "SO20261120001", "order_12345678",  # digits that follow letters belong to an id
    "8756431234567890123",  # a Zalo user id: 19 digits
    "12345678-1234-4321-8765-123456789012",  # a task id (UUID) made only of digits
    "1250000",  # an amount (7 digits)
])
def test_times_ids_and_long_numbers_stay_readable(kept: str) -> None:
    assert mask_phones_in(f"event {kept} done") == f"event {kept} done"


# --- real processes ------------------------------------------------------------------------

def _written_since(sizes: dict[Path, int]) -> str:
    """What the log files have had written to them since they had ``sizes`` bytes."""
    return "".join(path.read_bytes()[size:].decode("utf-8", errors="replace")
                   for path, size in sizes.items())


@pytest.mark.workers
def test_celery_s_own_loggers_mask_the_phones_of_a_message_they_print(
        loyalty: Loyalty, workers: list[WorkerProcess], celery_sender: Celery) -> None:
    sizes = {worker.log_path: worker.log_path.stat().st_size for worker in workers}
    # A task name no worker knows (a producer of another version, during a deploy): Celery
    # logs the whole message, events and all, from its own logger.
    events = [order_event(f"SO-UNKNOWN-{i}", "C-UNKNOWN", phone=phone, at=i)
              for i, phone in enumerate(PHONES)]
    celery_sender.send_task("loyalty.orders.apply_event_v0", args=[events], queue=ORDER_EVENTS)
    wait_for(lambda: "apply_event_v0" in _written_since(sizes), 60,
             "the workers did not log the unknown task")

    log = _written_since(sizes)
    assert "C-UNKNOWN" in log  # the message was printed, with the events
    assert leaks(log) == []
    assert_json_lines(log)


@pytest.fixture
def api(loyalty: Loyalty, tmp_path: Path) -> Iterator[tuple[str, ChildProcess]]:
    """``loyalty serve`` as ops start it, its output in a log file."""
    port = free_port()
    server = ChildProcess("api", [str(Path(sys.executable).parent / "loyalty"), "serve",
                                  "--port", str(port)],
                          settings_env(loyalty.settings), tmp_path / "api.log").start()
    try:
        server.wait_in_log("Uvicorn running", 60)
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.stop()


def test_the_api_logs_errors_and_requests_without_phones(
        loyalty: Loyalty, api: tuple[str, ChildProcess]) -> None:
    url, server = api
    secret = loyalty.settings.webhook_secret.get_secret_value()
    token = {"Authorization": f"Bearer {loyalty.settings.api_token.get_secret_value()}"}
    with failing_writes(loyalty, "rejected_events", "INSERT", "NEW.payload LIKE '%C-FAULT%'",
                        sqlstate="P0001"):
        for phone in PHONES:
            # Refused (unknown status), and keeping it refused fails unexpectedly: uvicorn's
            # error logger reports the exception, with the statement that carried the payload.
            body = json.dumps({**order_event("SO-API", "C-FAULT", phone=phone, name=NAME),
                               "status": "lost"}).encode()
            answer = httpx.post(f"{url}/v1/order-events", content=body, timeout=30, headers={
                "Content-Type": "application/json",
                "X-Loyalty-Signature": signature_of(body, secret)})
            assert answer.status_code >= 500
    for path in ("/v1/members/0901234567", "/v1/members/%2B6591234567/ledger",
                 "/v1/members/C-1?phone=12025550123"):
        httpx.get(f"{url}{path}", headers=token, timeout=30)  # uvicorn's access log
    wait_for(lambda: "/v1/members/C-1?phone=" in server.log(), 10, "no access log line")
    server.stop()

    log = server.log()
    assert INJECTED in log and "SQL parameters hidden" in log
    assert leaks(log) == []
    assert_json_lines(log)


def test_a_command_that_crashes_logs_its_error_without_the_phone(
        loyalty: Loyalty, tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    history.write_text("".join(
        json.dumps(order_event(f"SO-CLI-{i}", "C-FAULT", phone=phone, name=NAME, at=i)) + "\n"
        for i, phone in enumerate(PHONES)), encoding="utf-8")
    with failing_writes(loyalty, "customers", "UPDATE", "NEW.id = 'C-FAULT'"):
        done = subprocess.run([str(Path(sys.executable).parent / "loyalty"), "events", "import",
                               str(history)], cwd=ROOT, env=settings_env(loyalty.settings),
                              capture_output=True, text=True, timeout=120)
    # Kept for the scan of every log line of the suite (tests/test_log_scan.py).
    (tmp_path / "cli.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    assert done.returncode != 0
    assert INJECTED in done.stderr
    assert leaks(done.stdout + done.stderr) == []
    assert_json_lines(done.stderr)
