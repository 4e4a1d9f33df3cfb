"""Structured logs: one JSON object a line, phone numbers masked, no secrets."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# Vietnamese mobile numbers in any spelling: 0901234567, +84901234567, 84901234567.
_PHONE = re.compile(r"(?<!\d)(?:\+?84|0)\d{8,10}(?!\d)")


def mask_phone(phone: str | None) -> str | None:
    """Keep the last three digits: enough to tell customers apart on a support call."""
    if not phone:
        return phone
    return "*" * max(0, len(phone) - 3) + phone[-3:]


def mask_phones_in(text: str) -> str:
    return _PHONE.sub(lambda match: mask_phone(match.group(0)) or "", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({key: value for key, value in vars(record).items()
                      if key not in _STANDARD and not key.startswith("_")})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        # A last guard: whatever a caller logged, no full phone number leaves the process.
        return mask_phones_in(json.dumps(entry, ensure_ascii=False, default=str))


def configure_logging(level: int = logging.INFO) -> None:
    # sys.__stderr__: Celery replaces sys.stderr with a proxy that re-logs every line.
    handler = logging.StreamHandler(sys.__stderr__)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("loyalty")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
