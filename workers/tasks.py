"""Thin Celery entry points: each task calls one service."""

from __future__ import annotations

from typing import Any

from celery import Task
from sqlalchemy.exc import DBAPIError

from loyalty.bootstrap import get_loyalty
from loyalty.domain.events import FieldError
from loyalty.queueing import APPLY_ORDER_EVENT
from loyalty.services.events import handle_order_event, keep_refused
from workers.app import app

MAX_RETRIES = 8


@app.task(name=APPLY_ORDER_EVENT, bind=True, max_retries=MAX_RETRIES)
def apply_order_event(self: Task, event: dict[str, Any]) -> str:
    """Apply one order event; invalid ones are kept refused by the service, never retried."""
    try:
        return handle_order_event(get_loyalty(), event, source="queue").outcome.value
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
