"""Celery configuration shared by the workers and by producers that only send.

Queues are named for their work so that each can be scaled and watched apart; a worker
started without ``-Q`` consumes all of them.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from loyalty.embedded_redis import broker_url
from loyalty.settings import Settings

ORDER_EVENTS = "order_events"
CROSSSELL = "crosssell"
MESSAGES = "messages"
MAINTENANCE = "maintenance"
QUEUES = (ORDER_EVENTS, CROSSSELL, MESSAGES, MAINTENANCE)

APPLY_ORDER_EVENT = "loyalty.orders.apply_event"
CROSSSELL_SCAN = "loyalty.crosssell.scan"
SEND_MESSAGE = "loyalty.messages.send"
MIRROR_OA_TAG = "loyalty.messages.mirror_oa_tag"
SWEEP_TAGS = "loyalty.maintenance.sweep_tags"
RELAY_OUTBOX = "loyalty.maintenance.relay_outbox"
BIRTHDAYS = "loyalty.maintenance.birthdays"


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
        "task_routes": {"loyalty.orders.*": {"queue": ORDER_EVENTS},
                        "loyalty.crosssell.*": {"queue": CROSSSELL},
                        "loyalty.messages.*": {"queue": MESSAGES},
                        "loyalty.maintenance.*": {"queue": MAINTENANCE}},
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


def make_celery(settings: Settings, name: str = "loyalty") -> Celery:
    app = Celery(name)
    app.conf.update(celery_config(settings))
    return app


def enqueue_sends(app: Celery, message_ids: list[int] | tuple[int, ...]) -> None:
    """Queue outbox messages for sending; the outbox decides whether each is still due."""
    for message_id in message_ids:
        app.send_task(SEND_MESSAGE, args=[message_id], queue=MESSAGES)
