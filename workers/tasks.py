"""Thin Celery entry points: each task calls one service."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from celery import Task
from sqlalchemy.exc import DBAPIError

from loyalty import queueing
from loyalty.bootstrap import get_loyalty
from loyalty.domain.events import FieldError
from loyalty.embedded_redis import redis_url
from loyalty.services.birthdays import run_birthdays
from loyalty.services.channels import Sender, make_sender
from loyalty.services.crosssell import run_scan
from loyalty.services.events import handle_order_event, keep_refused
from loyalty.services.messaging import mark_enqueued, messages_to_enqueue, send_message
from loyalty.services.tags import sweep_tags
from loyalty.zalo import ZaloRetryable
from workers.app import app

MAX_RETRIES = 8


@lru_cache
def sender() -> Sender:
    loyalty = get_loyalty()
    return make_sender(loyalty.settings, loyalty.sessions, redis_url(loyalty.settings))


def _as_of(as_of: str | None) -> datetime:
    return datetime.fromisoformat(as_of) if as_of else get_loyalty().clock()


def _queue_sends(message_ids: list[int] | tuple[int, ...]) -> None:
    queueing.enqueue_sends(app, message_ids)
    mark_enqueued(get_loyalty(), list(message_ids))


@app.task(name=queueing.APPLY_ORDER_EVENT, bind=True, max_retries=MAX_RETRIES)
def apply_order_event(self: Task, event: dict[str, Any]) -> str:
    """Apply one order event; invalid ones are kept refused by the service, never retried."""
    try:
        applied = handle_order_event(get_loyalty(), event, source="queue")
    except DBAPIError as error:
        # Lost connections, lock timeouts, deadlocks and a race on a new order's key are
        # transient: the transaction rolled back, so trying again is safe.
        if self.request.retries >= MAX_RETRIES:
            keep_refused(get_loyalty(), event, [FieldError(
                field="(event)", message=f"not applied after {MAX_RETRIES} retries: "
                                         f"{type(error.orig).__name__}")], source="queue")
            return "refused"
        raise self.retry(exc=error, countdown=min(30, 0.2 * 2 ** self.request.retries)) \
            from error
    _queue_sends(applied.messages)
    return applied.outcome.value


@app.task(name=queueing.CROSSSELL_SCAN)
def crosssell_scan(as_of: str | None = None) -> dict[str, int]:
    report = run_scan(get_loyalty(), _as_of(as_of))
    _queue_sends(report.queued)
    return {"selected": report.selected, "queued": len(report.queued),
            "unreachable": report.unreachable}


@app.task(name=queueing.SEND_MESSAGE, bind=True, max_retries=6)
def send_outbox_message(self: Task, message_id: int) -> str:
    result = send_message(get_loyalty(), message_id, sender())
    if result.retry_in is not None and self.request.retries < (self.max_retries or 0):
        # Past the last retry the message stays pending; the outbox relay picks it up.
        raise self.retry(countdown=result.retry_in)
    if result.tag_added is not None:
        user_id, tag = result.tag_added
        mirror_oa_tag.delay(user_id, tag, True)
    return result.status


@app.task(name=queueing.MIRROR_OA_TAG, autoretry_for=(ZaloRetryable,), retry_backoff=2,
          retry_backoff_max=60, max_retries=8)
def mirror_oa_tag(user_id: str, tag: str, add: bool) -> None:
    """The OA copy of a tag; the database stays the source of truth."""
    sender().tag(user_id, tag, add=add)


@app.task(name=queueing.SWEEP_TAGS)
def sweep_due_tags(as_of: str | None = None) -> int:
    loyalty = get_loyalty()
    cleared = sweep_tags(loyalty, _as_of(as_of))
    if loyalty.program.crosssell.mirror_oa_tag:
        for _, user_id, tag in cleared:
            if user_id:
                mirror_oa_tag.delay(user_id, tag, False)
    return len(cleared)


@app.task(name=queueing.RELAY_OUTBOX)
def relay_outbox() -> int:
    loyalty = get_loyalty()
    due = messages_to_enqueue(loyalty, loyalty.clock())
    queueing.enqueue_sends(app, due)
    return len(due)


@app.task(name=queueing.BIRTHDAYS)
def birthdays(as_of: str | None = None) -> int:
    report = run_birthdays(get_loyalty(), _as_of(as_of))
    _queue_sends(report.queued)
    return len(report.queued)
