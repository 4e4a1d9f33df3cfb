"""The schedule Celery Beat runs (``celery -A workers beat``). Run exactly one beat.

Times are the shop's (``LOYALTY_TIMEZONE``, Asia/Ho_Chi_Minh by default) and come from the
configured program file, read when beat starts (every process imports this module, and it
must not need the database to do so). To move the scan or the birthday job: change that
file, put it in force (``loyalty program apply FILE`` or ``loyalty db upgrade``) and restart
beat. Every job is idempotent per period, so a second beat started by mistake sends nothing
twice; it only wastes a scan.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from loyalty.bootstrap import get_loyalty
from loyalty.queueing import BIRTHDAYS, CROSSSELL_SCAN, RELAY_OUTBOX, SWEEP_TAGS

_program = get_loyalty().programs.configured.program
_scan_at = _program.crosssell.scan_at
_birthdays_at = _program.birthdays.send_at

SCHEDULE: dict[str, dict[str, Any]] = {
    "crosssell-daily-scan": {
        "task": CROSSSELL_SCAN,
        "schedule": crontab(hour=_scan_at.hour, minute=_scan_at.minute),
    },
    "birthday-gifts": {
        "task": BIRTHDAYS,
        "schedule": crontab(hour=_birthdays_at.hour, minute=_birthdays_at.minute),
    },
    # Tags fall due at any minute (15 days after their nudge was sent).
    "tag-sweep": {
        "task": SWEEP_TAGS,
        "schedule": crontab(minute="*/5"),
    },
    # Held messages (night ban, quota) and sends whose task was lost.
    "outbox-relay": {
        "task": RELAY_OUTBOX,
        "schedule": 60.0,
    },
}
