"""The baseline's Celery app: ``celery -A bench.noop_app worker``.

It has the loyalty workers' exact configuration (``loyalty.queueing.celery_config``: acks
late, prefetch 1, JSON, task events, same queues) and one task that does nothing but count
itself, so that "loyalty events/s ÷ no-ops/s" is the cost of the event path itself.

Only worker processes import this module (the benchmark sends by task name, from
``bench.noop``): building the app reads settings from the environment.
"""

from __future__ import annotations

from functools import lru_cache

import redis
from celery import Celery

from bench.noop import DONE_KEY, NOOP
from loyalty.embedded_redis import redis_url
from loyalty.queueing import celery_config
from loyalty.settings import get_settings

app = Celery("bench-noop")
app.conf.update(celery_config(get_settings()))


@lru_cache
def _counter() -> redis.Redis:
    # Created on first use, in the pool process itself, never inherited across the fork.
    return redis.Redis.from_url(redis_url(get_settings()))


@app.task(name=NOOP)
def noop() -> None:
    # Counted in Redis: the shared config turns results off, and the baseline keeps it so.
    _counter().incr(DONE_KEY)
