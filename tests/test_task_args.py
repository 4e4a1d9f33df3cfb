"""What ops see of a task in Flower and ``celery inspect``: the events and orders it carries,
never the customer. Flower builds its task pages from the task events (``task-sent`` and
``task-received`` carry ``args``/``kwargs``, ``task-retried``/``task-failed`` an exception
and a traceback) and its worker pages from ``inspect active/reserved/scheduled``."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from devtools.processes import WorkerProcess
from loyalty.bootstrap import Loyalty
from loyalty.producer import enqueue_order_events
from loyalty.queueing import APPLY_ORDER_EVENTS, events_summary
from loyalty.settings import Settings
from tests.support.events import order_event
from tests.support.faults import failing_writes
from tests.support.privacy import NAME, PHONES, leaks

Drain = Callable[[Callable[[list[dict[str, Any]]], bool], float, str], None]


@contextmanager
def task_events(app: Celery) -> Iterator[tuple[list[dict[str, Any]], Drain]]:
    """Every Celery event on the broker from now on, as Flower receives them."""
    captured: list[dict[str, Any]] = []
    with app.connection_for_read() as connection:
        receiver = app.events.Receiver(connection, handlers={"*": captured.append})
        # wakeup: the workers answer with a heartbeat, which proves the subscription is live.
        with receiver.consumer_context(wakeup=True) as (live, _, _):
            def drain(until: Callable[[list[dict[str, Any]]], bool], timeout: float,
                      message: str) -> None:
                waited = 0.0
                while not until(captured):
                    try:
                        live.drain_events(timeout=0.5)
                    except TimeoutError:
                        waited += 0.5
                        assert waited < timeout, message

            drain(lambda seen: any(e["type"] == "worker-heartbeat" for e in seen), 30,
                  "no worker heartbeat: the event receiver is not listening")
            yield captured, drain


def of_tasks(captured: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in captured if event["type"] == kind
            and event.get("name", APPLY_ORDER_EVENTS) == APPLY_ORDER_EVENTS]


@pytest.mark.workers
def test_task_events_name_the_event_and_order_never_the_customer(
        loyalty: Loyalty, workers: list[WorkerProcess], celery_sender: Celery) -> None:
    events = [order_event(f"SO-ARGS-{i}", f"C-ARGS-{i}", phone=phone, name=NAME)
              for i, phone in enumerate(PHONES)]
    with task_events(celery_sender) as (captured, drain):
        with failing_writes(loyalty, "customers", "UPDATE", "NEW.id = 'C-ARGS-0'"):
            enqueue_order_events(events, celery=celery_sender)
            # The batch fails in the database and is retried: a message of its own.
            drain(lambda seen: bool(of_tasks(seen, "task-retried")), 60, "no retry")
        drain(lambda seen: bool(of_tasks(seen, "task-succeeded")), 60, "no success")

    summary = events_summary(events)  # one batch, the customers in the order sent
    assert summary.startswith(f"{len(events)} events: {events[0]['event_id']} (SO-ARGS-0), ")
    for kind in ("task-sent", "task-received"):
        shown = of_tasks(captured, kind)
        # Twice at least: the retry was sent and received with the summary as well.
        assert len(shown) >= 2, kind
        assert {(event["args"], event["kwargs"]) for event in shown} == {(summary, "{}")}, kind
    [retried, *_] = of_tasks(captured, "task-retried")
    assert "SQL parameters hidden" in retried["traceback"]  # no values in the error text
    assert leaks(json.dumps(captured, ensure_ascii=False, default=str)) == []


def test_the_summary_names_a_few_events_and_counts_the_rest() -> None:
    batch = [order_event(f"SO-{i}", "C-1", event_id=f"evt-{i}", phone=PHONES[0], name=NAME)
             for i in range(1, 9)]
    assert events_summary(batch[:1]) == "1 event: evt-1 (SO-1)"
    assert events_summary(batch[:3]) == "3 events: evt-1 (SO-1), evt-2 (SO-2), evt-3 (SO-3)"
    assert events_summary(batch) == ("8 events: evt-1 (SO-1), evt-2 (SO-2), evt-3 (SO-3), "
                                     "evt-4 (SO-4), evt-5 (SO-5), and 3 more")


@pytest.mark.workers
def test_inspect_shows_a_waiting_task_by_its_summary_not_its_arguments(
        migrated: Settings, celery_sender: Celery, tmp_path: Path) -> None:
    # A worker of its own on a queue of its own: the waiting task never reaches another
    # worker, and is never run.
    queue = f"inspect-q{uuid.uuid4().hex[:8]}"  # never 8 digits after a dash: not a phone
    worker = WorkerProcess(migrated, tmp_path / "inspect.log", name=queue, concurrency=1,
                           queues=queue).start()
    try:
        event = order_event("SO-WAIT", "C-WAIT", phone=PHONES[2], name=NAME)
        summary = events_summary([event])
        # Held by the worker until its time, as a retry with a countdown is: Flower's worker
        # page lists it through `inspect scheduled`.
        waiting = celery_sender.send_task(APPLY_ORDER_EVENTS, args=[[event]], queue=queue,
                                          countdown=3600, argsrepr=summary, kwargsrepr="{}")
        inspect = celery_sender.control.inspect(
            timeout=5, destination=[f"{queue}@{socket.gethostname()}"])
        scheduled: list[dict[str, Any]] = []
        for _ in range(20):
            scheduled = [entry["request"] for entries in (inspect.scheduled() or {}).values()
                         for entry in entries if entry["request"]["id"] == waiting.id]
            if scheduled:
                break
        assert [(request["args"], request["kwargs"]) for request in scheduled] == \
            [(summary, "{}")]
        queried = inspect.query_task(waiting.id) or {}
        assert [answer[waiting.id][1]["args"] for answer in queried.values()] == [summary]
        shown = json.dumps([inspect.scheduled(), queried, inspect.reserved(), inspect.active()],
                           ensure_ascii=False, default=str)
        assert leaks(shown) == []
    finally:
        worker.stop()
