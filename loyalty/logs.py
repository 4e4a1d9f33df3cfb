"""Structured logs: one JSON object a line, phone numbers masked, no secrets."""

from __future__ import annotations

import copy
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


# A query parameter that carries a credential (the member's page in development takes its
# token from ``?access_token=``), in a URL an access log prints.
_CREDENTIAL_IN_QUERY = re.compile(r"([?&][^=&\s]*(?:token|code|secret)[^=&\s]*=)[^&\s\"]*",
                                  re.IGNORECASE)


def redact_credentials_in(text: str) -> str:
    return _CREDENTIAL_IN_QUERY.sub(r"\1[redacted]", text)


class RedactCredentials(logging.Filter):
    """Takes credentials out of the URLs in a record, e.g. uvicorn's access log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_credentials_in(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_credentials_in(arg) if isinstance(arg, str) else arg
                                for arg in record.args)
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging, with credentials taken out of every line it writes."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": RedactCredentials}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    return config


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
        # A last guard: whatever a caller logged, no full phone number or credential in a URL
        # leaves the process.
        return redact_credentials_in(
            mask_phones_in(json.dumps(entry, ensure_ascii=False, default=str)))


def configure_logging(level: int = logging.INFO) -> None:
    # sys.__stderr__: Celery replaces sys.stderr with a proxy that re-logs every line.
    handler = logging.StreamHandler(sys.__stderr__)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("loyalty")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
