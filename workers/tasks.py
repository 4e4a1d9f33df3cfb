"""Thin Celery entry points: each task calls one service.

One decorator, ``task``, owns what every task shares: its name (and so its queue:
``loyalty.queueing.ROUTES``), retrying, and what happens when retrying is over.

- Infrastructure failures (the database or the broker out of reach, a lock timeout, a
  deadlock) say nothing about the work: the task is tried again with capped backoff for as
  long as it takes. It is acknowledged only once its work is done or durably kept.
- ``RetryLater`` (Zalo asked us to wait, a race to try again) is retried after its delay, at
  most ``retries`` times; then, and for any other error, the task's ``give_up`` runs (the
  order-event task keeps the event among the refused ones). Without one the task fails
  with the error logged: every such task is idempotent and swept again on schedule.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis
from celery import Task
from kombu.exceptions import OperationalError as BrokerUnreachable
from sqlalchemy.exc import DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from loyalty import queueing
from loyalty.bootstrap import get_loyalty
from loyalty.services import outbox
from loyalty.services.birthdays import run_birthdays
from loyalty.services.crosssell import run_scan
from loyalty.services.events import handle_order_events, keep_failed
from loyalty.services.orders import ConcurrentChange
from loyalty.services.tags import sweep_tags
from loyalty.zalo import ZaloRetryable
from workers.app import app

log = logging.getLogger("loyalty.tasks")

INFRASTRUCTURE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout,
                  redis.ConnectionError, redis.TimeoutError, BrokerUnreachable)
MAX_BACKOFF_SECONDS = 30.0


class RetryLater(Exception):
    def __init__(self, delay: float, reason: str):
        super().__init__(delay, reason)
        self.delay = delay


def longest_wait() -> float:
    """The longest a retry may wait: a retry waits unacknowledged in a worker, and one that
    waited past the broker's visibility timeout would be handed out a second time."""
    return min(MAX_BACKOFF_SECONDS, get_loyalty().settings.broker_visibility_timeout / 2)


def backoff(retries: int) -> float:
    """Doubling from half a second up to ``longest_wait``, jittered so that the workers that
    failed together do not all come back in the same instant."""
    return min(longest_wait(), 0.5 * 2 ** retries) * random.uniform(0.8, 1.0)


GiveUp = Callable[..., Any]


def task(name: str, *, retries: int = 6, give_up: GiveUp | None = None
         ) -> Callable[[Callable[..., Any]], Task]:
    def decorate(body: Callable[..., Any]) -> Task:
        def run(self: Task, *args: Any, **kwargs: Any) -> Any:
            try:
                try:
                    return body(*args, **kwargs)
                except INFRASTRUCTURE:
                    raise
                except RetryLater as later:
                    if self.request.retries < retries:
                        raise self.retry(countdown=min(later.delay, longest_wait())) \
                            from later
                    if give_up is None:
                        log.warning("task gave up retrying", extra={"task": name,
                                                                    "reason": str(later)})
                        return None
                    return give_up(later, *args, **kwargs)
                except Exception as error:
                    if give_up is None:
                        raise
                    return give_up(error, *args, **kwargs)
            except INFRASTRUCTURE as error:
                log.warning("infrastructure failure; trying again", extra={
                    "task": name, "error": type(error).__name__,
                    "retries": self.request.retries})
                raise self.retry(exc=error, countdown=backoff(self.request.retries)) \
                    from error

        # Not functools.wraps: Celery checks call arguments against the signature it finds,
        # and that must be run's own (with ``self``), not the body's.
        run.__name__, run.__doc__ = body.__name__, body.__doc__
        return app.task(name=name, bind=True, max_retries=None)(run)
    return decorate


def _as_of(as_of: str | None) -> datetime:
    return datetime.fromisoformat(as_of) if as_of else get_loyalty().clock()


def _one_by_one(error: Exception, events: list[dict[str, Any]]) -> dict[str, int]:
    """A batch that failed for a reason no check foresaw: each event is tried on its own,
    so that only the one at fault is kept (with the error, for a replay) and the others
    apply. An infrastructure failure meanwhile retries the whole batch, which is safe: what
    applied already is a duplicate the second time."""
    loyalty = get_loyalty()
    outcomes: Counter[str] = Counter()
    for event in events:
        try:
            [applied] = handle_order_events(loyalty, [event], source="queue")
            outcomes[applied.outcome.value] += 1
        except INFRASTRUCTURE:
            raise
        except Exception as failure:
            keep_failed(loyalty, event, failure, source="queue")
            outcomes["refused"] += 1
    return dict(outcomes)


def _apply(events: list[dict[str, Any]]) -> dict[str, int]:
    try:
        applied = handle_order_events(get_loyalty(), events, source="queue")
    except (IntegrityError, ConcurrentChange) as error:
        # Two batches created the same member or order at once: the next try reads what
        # the other one wrote (and refuses an event that named the wrong customer).
        raise RetryLater(0.2, f"conflict: {type(error).__name__}") from error
    return dict(Counter(result.outcome.value for result in applied))


@task(queueing.APPLY_ORDER_EVENTS, give_up=_one_by_one)
def apply_order_events(events: list[dict[str, Any]]) -> dict[str, int]:
    """Apply a batch of order events in one transaction; invalid ones are kept refused by
    the service, never retried. Returns how many had each outcome."""
    return _apply(events)


def _alone(error: Exception, event: dict[str, Any]) -> dict[str, int]:
    return _one_by_one(error, [event])


@task(queueing.APPLY_ORDER_EVENT, give_up=_alone)
def apply_order_event(event: dict[str, Any]) -> dict[str, int]:
    """A task queued by an earlier version, one event each."""
    return _apply([event])


@task(queueing.CROSSSELL_SCAN)
def crosssell_scan(as_of: str | None = None) -> dict[str, int]:
    loyalty = get_loyalty()
    report = run_scan(loyalty, _as_of(as_of))
    outbox.dispatch(loyalty, report.queued)
    return {"selected": report.selected, "queued": len(report.queued),
            "unreachable": report.unreachable, "over_monthly_cap": report.over_monthly_cap,
            "no_recent_contact": report.no_recent_contact}


@task(queueing.SEND_MESSAGE)
def send_outbox_message(message_id: int) -> str:
    """Past the last retry the message stays pending; the outbox relay picks it up."""
    loyalty = get_loyalty()
    result = outbox.send_message(loyalty, message_id, loyalty.sender, loyalty.on_sent)
    if result.retry_in is not None:
        raise RetryLater(result.retry_in, f"message {message_id} is {result.status}")
    return result.status


@task(queueing.MIRROR_OA_TAG, retries=8)
def mirror_oa_tag(user_id: str, tag: str, add: bool) -> None:
    """The OA copy of a tag; the database stays the source of truth."""
    try:
        get_loyalty().sender.tag(user_id, tag, add=add)
    except ZaloRetryable as error:
        raise RetryLater(error.retry_after or backoff(0), str(error)) from error


@task(queueing.SWEEP_TAGS)
def sweep_due_tags(as_of: str | None = None) -> int:
    return len(sweep_tags(get_loyalty(), _as_of(as_of)))


@task(queueing.RELAY_OUTBOX)
def relay_outbox() -> int:
    loyalty = get_loyalty()
    return len(outbox.relay(loyalty, loyalty.clock()))


@task(queueing.BIRTHDAYS)
def birthdays(as_of: str | None = None) -> int:
    loyalty = get_loyalty()
    report = run_birthdays(loyalty, _as_of(as_of))
    outbox.dispatch(loyalty, report.queued)
    return len(report.queued)
