"""The schedule Celery Beat runs (``celery -A workers beat``). Run exactly one beat."""

from __future__ import annotations

from typing import Any

SCHEDULE: dict[str, dict[str, Any]] = {}
