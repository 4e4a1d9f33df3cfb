"""Zalo's error codes sorted by what the caller should do about them, and the exceptions
the client raises.

Zalo answers most failures with HTTP 200 and a non-zero ``error`` field, so the code is
the only reliable signal; :func:`classify` turns it into a decision with no I/O.
"""

from __future__ import annotations

from enum import Enum


class ErrorKind(Enum):
    TOKEN = "token"  # refresh the access token once, then retry once
    RATE_LIMIT = "rate_limit"  # back off and retry soon
    NIGHT_BAN = "night_ban"  # 22:00–06:00: hold until morning
    QUOTA = "quota"  # out of quota: retry another day
    FINAL = "final"  # retrying cannot help this recipient/message


_KIND_BY_CODE: dict[int, ErrorKind] = {
    -216: ErrorKind.TOKEN,  # access token invalid
    -220: ErrorKind.TOKEN,  # access token expired or removed
    -124: ErrorKind.TOKEN,  # ZNS: access token invalid
    -32: ErrorKind.RATE_LIMIT,
    -234: ErrorKind.NIGHT_BAN,  # OA
    -133: ErrorKind.NIGHT_BAN,  # ZNS
    -211: ErrorKind.QUOTA,  # OA out of quota
    -218: ErrorKind.QUOTA,  # recipient quota reached
    -144: ErrorKind.QUOTA,  # ZNS daily limit
}


def classify(code: int) -> ErrorKind:
    """What to do about a non-zero Zalo ``error`` code.

    Unknown codes are FINAL: retrying a code we do not understand risks sending the same
    message many times, while a final failure is recorded and can be looked at.
    """
    return _KIND_BY_CODE.get(code, ErrorKind.FINAL)


class ZaloError(Exception):
    """A call to Zalo failed; ``code`` is Zalo's error code, or None for HTTP/network faults."""

    def __init__(self, code: int | None, message: str) -> None:
        # args mirror the constructor so the exception survives pickling and Celery's
        # JSON result serialisation, both of which rebuild it as cls(*args).
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        if self.code is None:
            return self.message
        return f"Zalo error {self.code}: {self.message}"


class ZaloRetryable(ZaloError):
    """Transient: rate limit (-32), HTTP 5xx, timeout or connection error.

    The client never sleeps; the caller (a Celery task) backs off, using ``retry_after``
    (seconds) when Zalo said how long to wait.
    """

    def __init__(self, code: int | None, message: str, retry_after: float | None = None) -> None:
        super().__init__(code, message)
        self.args = (code, message, retry_after)
        self.retry_after = retry_after


class ZaloNightBan(ZaloError):
    """Zalo refuses this kind of message at night (-234, -133); send it in the morning."""


class ZaloQuotaExceeded(ZaloError):
    """A quota is used up (-211, -218, -144); try again another day."""


class ZaloFinalError(ZaloError):
    """Final for this recipient or message (not a follower, blocked, bad phone, …)."""


class ZaloUnexpectedAnswer(ZaloError):
    """Zalo answered ``error: 0`` with data this client does not understand."""


class ZaloTokenError(ZaloError):
    """The access token was refused even after a refresh, or the refresh itself failed.

    Sending cannot go on until someone authorises the OA again.
    """


def error_for(code: int, message: str, retry_after: float | None = None) -> ZaloError:
    """The exception for a non-zero Zalo error code (a TOKEN code gives ZaloTokenError)."""
    kind = classify(code)
    if kind is ErrorKind.RATE_LIMIT:
        return ZaloRetryable(code, message, retry_after)
    if kind is ErrorKind.NIGHT_BAN:
        return ZaloNightBan(code, message)
    if kind is ErrorKind.QUOTA:
        return ZaloQuotaExceeded(code, message)
    if kind is ErrorKind.TOKEN:
        return ZaloTokenError(code, message)
    return ZaloFinalError(code, message)
