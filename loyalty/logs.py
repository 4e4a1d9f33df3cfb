"""Structured logs: one JSON object a line, phone numbers masked, no secrets.

Every process writes its logs through one handler on the root logger (``configure_logging``):
our loggers, uvicorn's error and access loggers, Celery's loggers and what Celery redirects
from stdout and stderr all propagate to it, so the masking below covers every line of them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

# uvicorn adds "color_message", a copy of the message with terminal colours.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "color_message"}
# Phone numbers as events carry them (an optional + and 8 to 15 digits, any country),
# wherever they stand in a text: a JSON payload, an error message, a URL. Digits that touch
# more digits (a 19-digit Zalo user id) or follow a letter or underscore (ids such as
# SO20261120001) are left alone, as are UUIDs (task ids); digits after a JSON escape (\n,
# \u0000) or an encoded + (%2B) are masked all the same. ISO times never have 8 digits in a row.
_PHONE = re.compile(
    r"(?P<uuid>\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)"
    r"|(?:(?<![0-9A-Za-z_])|(?<=\\[bfnrt])|(?<=\\u[0-9a-fA-F]{4})|(?<=%2[Bb]))"
    r"\+?[0-9]{8,15}(?![0-9])")


def mask_phone(phone: str | None) -> str | None:
    """Keep the last three digits: enough to tell customers apart on a support call."""
    if not phone:
        return phone
    return "*" * max(0, len(phone) - 3) + phone[-3:]


def mask_phones_in(text: str) -> str:
    return _PHONE.sub(lambda match: match.group("uuid") or mask_phone(match.group(0)) or "",
                      text)


# A query parameter that carries a credential (the member's page in development takes its
# token from ``?access_token=``), in a URL an access log prints.
# The value ends before a backslash too: in a JSON line the URL may be followed by \".
_CREDENTIAL_IN_QUERY = re.compile(r"([?&][^=&\s]*(?:token|code|secret)[^=&\s]*=)[^&\s\"\\]*",
                                  re.IGNORECASE)


def redact_credentials_in(text: str) -> str:
    return _CREDENTIAL_IN_QUERY.sub(r"\1[redacted]", text)


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's logging: no handler of its own. Its error and access loggers propagate to the
    JSON handler of ``configure_logging``, which masks phones and redacts credentials in every
    line; uvicorn's default handlers would print their lines around both."""
    return {"version": 1, "disable_existing_loggers": False}


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
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # A last guard: whatever a caller logged, no full phone number or credential in a URL
        # leaves the process.
        return redact_credentials_in(
            mask_phones_in(json.dumps(entry, ensure_ascii=False, default=str)))


def _log_uncaught(kind: type[BaseException], error: BaseException,
                  traceback: TracebackType | None) -> None:
    # A command that crashes prints its traceback, which may quote what it was working on.
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, traceback)
        return
    logging.getLogger("loyalty").critical("uncaught exception",
                                          exc_info=(kind, error, traceback))


def configure_logging(level: int = logging.INFO, *, libraries: int = logging.WARNING) -> None:
    """One JSON handler on the root logger, and every other logger propagating to it.

    ``level`` is that of our loggers, ``libraries`` that of the others (a Celery process
    passes its ``--loglevel``; uvicorn sets its own loggers' level).
    """
    # sys.__stderr__: Celery replaces sys.stderr with a proxy that logs every line again.
    handler = logging.StreamHandler(sys.__stderr__)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(libraries)
    # A logger with a handler of its own would write around the masking.
    for logger in logging.Logger.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            logger.handlers.clear()
            logger.propagate = True
    logging.getLogger("loyalty").setLevel(level)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
