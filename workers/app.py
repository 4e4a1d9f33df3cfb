"""The Celery app of ``celery -A workers``: the process's one app (``loyalty.bootstrap``),
with the schedule of ``beat_schedule.py``."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import setup_logging, worker_process_init

from beat_schedule import SCHEDULE
from loyalty.bootstrap import get_loyalty
from loyalty.logs import configure_logging

app = get_loyalty().celery
app.conf.beat_schedule = SCHEDULE
app.conf.include = ["workers.tasks"]


@setup_logging.connect
def _json_logs(loglevel: int | None = None, **_: Any) -> None:
    # Connected, this replaces Celery's own set-up in the worker and in beat: its loggers
    # then propagate to our masking JSON handler (pool processes inherit it), and so does
    # whatever a task prints, as Celery would otherwise redirect it to its own handler.
    configure_logging(loglevel or logging.INFO, libraries=loglevel or logging.INFO)
    app.log.redirect_stdouts(app.conf.worker_redirect_stdouts_level)


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    # A forked pool process must not share the parent's database connections.
    get_loyalty().engine.dispose(close=False)
