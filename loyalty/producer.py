"""The one call a Python producer uses to send order events (SPEC §4, Celery).

    from loyalty.producer import enqueue_order_events
    enqueue_order_events([event, ...])   # or one event dict

Every event is validated first; if any is invalid nothing is enqueued and ``InvalidEvents``
lists each bad event's index and fields. It needs the broker only, not the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from celery import Celery

from loyalty.domain.events import validate_all
from loyalty.queueing import TaskQueue, make_celery
from loyalty.settings import get_settings


class InvalidEvents(ValueError):
    def __init__(self, problems: list[dict[str, Any]]):
        self.problems = problems
        super().__init__(f"{len(problems)} invalid event(s): {problems}")


@lru_cache
def _default_app() -> Celery:
    return make_celery(get_settings(), name="loyalty-producer")


def enqueue_order_events(events: Mapping[str, Any] | Iterable[Mapping[str, Any]],
                         celery: Celery | None = None) -> int:
    """Validate all, then enqueue all; returns how many were enqueued."""
    batch = [events] if isinstance(events, Mapping) else list(events)
    valid, problems = validate_all(batch)
    if problems:
        raise InvalidEvents(problems)
    return TaskQueue(celery or _default_app()).order_events(event.to_json() for event in valid)
