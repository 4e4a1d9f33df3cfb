"""Celery as the services see it: the queues, the task names and where each task goes, and
``TaskQueue``, the one place that puts work on them.

Queues are named for their work so that each can be scaled and watched apart; a worker
started without ``-Q`` consumes all of them. A task goes to the queue its name's prefix
says (``task_routes``): that is stated here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from celery import Celery, Task
from celery.worker.request import Request
from kombu import Exchange, Queue

from loyalty.embedded_redis import broker_url
from loyalty.settings import Settings

ORDER_EVENTS = "order_events"
CROSSSELL = "crosssell"
MESSAGES = "messages"
MAINTENANCE = "maintenance"
QUEUES = (ORDER_EVENTS, CROSSSELL, MESSAGES, MAINTENANCE)
ROUTES = {"loyalty.orders.*": ORDER_EVENTS, "loyalty.crosssell.*": CROSSSELL,
          "loyalty.messages.*": MESSAGES, "loyalty.maintenance.*": MAINTENANCE}

APPLY_ORDER_EVENTS = "loyalty.orders.apply_events"
# One event a task: what earlier versions queued; still served, so nothing queued is lost.
APPLY_ORDER_EVENT = "loyalty.orders.apply_event"
CROSSSELL_SCAN = "loyalty.crosssell.scan"
SEND_MESSAGE = "loyalty.messages.send"
MIRROR_OA_TAG = "loyalty.messages.mirror_oa_tag"
SWEEP_TAGS = "loyalty.maintenance.sweep_tags"
RELAY_OUTBOX = "loyalty.maintenance.relay_outbox"
BIRTHDAYS = "loyalty.maintenance.birthdays"

# Order events are published while their sender waits for an answer (the webhook): a few
# tries within about two seconds, then the caller hears the broker is down.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5,
                 "interval_max": 1}


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": broker_url(settings),
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        # Acknowledge after the work is done, and put the task back when the process running
        # it dies: every task is idempotent, so running twice is safe and losing one is not.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # Each queue on its own exchange and key: without a key all four would be bound to
        # one exchange, and a message published to it would be copied into every queue.
        "task_queues": [Queue(name, Exchange(name), routing_key=name) for name in QUEUES],
        "task_default_queue": ORDER_EVENTS,
        "task_routes": {pattern: {"queue": queue} for pattern, queue in ROUTES.items()},
        "broker_transport_options": {
            "visibility_timeout": settings.broker_visibility_timeout,
            "unacked_restore_interval": settings.broker_restore_interval,
            "unacked_restore_throttle": 1,
        },
        "broker_connection_retry_on_startup": True,
        "timezone": settings.timezone,
        "enable_utc": True,
        # Flower shows tasks from these events.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
    }


def events_summary(events: Sequence[Mapping[str, Any]], shown: int = 5) -> str:
    """The ``argsrepr`` of a task that carries ``events`` (valid JSON documents), what Flower
    and ``celery inspect`` show of it: the events and their orders, never the customer."""
    named = ", ".join(f"{event['event_id']} ({event['order_id']})" for event in events[:shown])
    more = f", and {len(events) - shown} more" if len(events) > shown else ""
    return f"{len(events)} event{'' if len(events) == 1 else 's'}: {named}{more}"


class _ReprOnlyRequest(Request):
    def info(self, safe: bool = False) -> dict[str, Any]:
        # `celery inspect active/reserved/scheduled/query_task`, and so Flower's worker page,
        # ask for the arguments themselves; they get the sender's argsrepr instead.
        return super().info(safe=True)


class ReprOnlyTask(Task):
    """A task whose arguments (whole events, with phones) ops never see: Flower, task events
    and ``celery inspect`` show the ``argsrepr`` it was sent with."""

    Request = _ReprOnlyRequest

    def retry(self, *args: Any, **options: Any) -> Any:
        # A retry is a new message; Celery would give it a repr of the arguments themselves.
        options.setdefault("argsrepr", getattr(self.request, "argsrepr", None))
        options.setdefault("kwargsrepr", getattr(self.request, "kwargsrepr", None))
        return super().retry(*args, **options)


def make_celery(settings: Settings, name: str = "loyalty") -> Celery:
    app = Celery(name, task_cls=ReprOnlyTask)
    app.conf.update(celery_config(settings))
    return app


def batches_by_customer(events: Iterable[dict[str, Any]], size: int
                        ) -> list[list[dict[str, Any]]]:
    """Events packed into batches of at most ``size``, a customer's events together and in
    arrival order, customers in the order they first appear.

    A customer with more than ``size`` events gets consecutive batches of their own, which
    two workers may apply in either order: the rules make an order's outcome independent of
    arrival order, and the member's row lock serialises them.
    """
    by_customer: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_customer.setdefault(str(event["customer"]["id"]), []).append(event)
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    for group in by_customer.values():
        if current and len(current) + len(group) > size:
            batches.append(current)
            current = []
        for start in range(0, len(group), size):
            part = group[start:start + size]
            if len(part) == size:
                batches.append(part)
            else:
                current.extend(part)
    if current:
        batches.append(current)
    return batches


class TaskQueue:
    """The work services hand to the workers, published through one producer a call."""

    def __init__(self, app: Celery, batch_size: int = 100):
        self.app = app
        self.batch_size = batch_size

    def order_events(self, events: Iterable[dict[str, Any]]) -> int:
        """Queue valid events (as JSON documents) in batches; returns how many events."""
        batches = batches_by_customer(events, self.batch_size)
        with self.app.producer_or_acquire() as producer:
            for batch in batches:
                self.app.send_task(APPLY_ORDER_EVENTS, args=[batch], producer=producer,
                                   retry=True, retry_policy=PUBLISH_RETRY,
                                   argsrepr=events_summary(batch), kwargsrepr="{}")
        return sum(len(batch) for batch in batches)

    def send_messages(self, message_ids: Iterable[int]) -> None:
        """The outbox decides whether each message is still due when its task runs."""
        with self.app.producer_or_acquire() as producer:
            for message_id in message_ids:
                self.app.send_task(SEND_MESSAGE, args=[message_id], producer=producer)

    def mirror_oa_tag(self, user_id: str, tag: str, *, add: bool) -> None:
        self.app.send_task(MIRROR_OA_TAG, args=[user_id, tag, add])
