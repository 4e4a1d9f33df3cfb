"""The one call a Python producer uses to send order events (SPEC §4, Celery).

    from loyalty.producer import enqueue_order_events
    enqueue_order_events([event, ...])   # or one event dict

Every event is validated first; if any is invalid nothing is enqueued and ``InvalidEvents``
lists each bad event's index and fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from celery import Celery

from loyalty.queueing import APPLY_ORDER_EVENT, ORDER_EVENTS, make_celery
from loyalty.services.events import validate_all
from loyalty.settings import get_settings


class InvalidEvents(ValueError):
    def __init__(self, problems: list[dict[str, Any]]):
        self.problems = problems
        super().__init__(f"{len(problems)} invalid event(s): {problems}")


@lru_cache
def _sender() -> Celery:
    return make_celery(get_settings(), name="loyalty-producer")


def enqueue_order_events(events: Mapping[str, Any] | Iterable[Mapping[str, Any]],
                         celery: Celery | None = None) -> int:
    """Validate all, then enqueue all; returns how many were enqueued."""
    batch = [events] if isinstance(events, Mapping) else list(events)
    valid, problems = validate_all(batch)
    if problems:
        raise InvalidEvents(problems)
    app = celery or _sender()
    with app.producer_or_acquire() as producer:
        for event in valid:
            app.send_task(APPLY_ORDER_EVENT, args=[event.to_json()], queue=ORDER_EVENTS,
                          producer=producer, retry=True)
    return len(valid)
