"""The Celery app of ``celery -A workers``: the process's one app (``loyalty.bootstrap``),
with the schedule of ``beat_schedule.py``."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init

from beat_schedule import SCHEDULE
from loyalty.bootstrap import get_loyalty
from loyalty.logs import configure_logging

app = get_loyalty().celery
app.conf.beat_schedule = SCHEDULE
app.conf.include = ["workers.tasks"]


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    # A forked pool process must not share the parent's database connections.
    get_loyalty().engine.dispose(close=False)
    configure_logging()
