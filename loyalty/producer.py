"""The one call a Python producer uses to send order events (SPEC §4, Celery).

    from loyalty.producer import enqueue_order_events
    enqueue_order_events([event, ...])   # or one event dict

Every event is validated first; if any is invalid nothing is enqueued and ``InvalidEvents``
lists each bad event's index and fields. It needs the broker only, not the database.
``QueueUnavailable`` says the broker could not be reached within a few seconds: events before
the failing one may be queued already, so the caller sends the whole batch again later (the
same ``event_id`` counts once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError

from loyalty.domain.events import validate_all
from loyalty.queueing import TaskQueue, make_celery
from loyalty.settings import Settings, get_settings

# A publish takes about a millisecond. A broker that has not connected or answered within
# these bounds is down, and the caller (the webhook, which answers 503) hears so in seconds
# instead of hanging: without a socket timeout a broker that accepts connections but never
# answers blocks the publish for good.
PUBLISH_TIMEOUTS = {"socket_connect_timeout": 1, "socket_timeout": 2}


class InvalidEvents(ValueError):
    def __init__(self, problems: list[dict[str, Any]]):
        self.problems = problems
        super().__init__(f"{len(problems)} invalid event(s): {problems}")


class QueueUnavailable(ConnectionError):
    """The broker could not be reached: send the batch again later."""


def producer_app(settings: Settings) -> Celery:
    """A Celery app that only sends, with the publish bounds above."""
    app = make_celery(settings, name="loyalty-producer")
    app.conf.broker_transport_options = {**app.conf.broker_transport_options,
                                         **PUBLISH_TIMEOUTS}
    return app


@lru_cache
def _default_app() -> Celery:
    return producer_app(get_settings())


def enqueue_order_events(events: Mapping[str, Any] | Iterable[Mapping[str, Any]],
                         celery: Celery | None = None) -> int:
    """Validate all, then enqueue all; returns how many were enqueued."""
    batch = [events] if isinstance(events, Mapping) else list(events)
    valid, problems = validate_all(batch)
    if problems:
        raise InvalidEvents(problems)
    tasks = TaskQueue(celery or _default_app(), get_settings().order_event_batch_size)
    try:
        return tasks.order_events(event.to_json() for event in valid)
    except OperationalError as error:
        raise QueueUnavailable(f"the broker cannot be reached: {error}") from error
