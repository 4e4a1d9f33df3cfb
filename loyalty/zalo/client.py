"""The Zalo OA / ZNS HTTP client.

Every failure comes out as one of the exceptions in :mod:`loyalty.zalo.errors`, already
sorted by what the caller should do. The client retries only the one thing it can fix
itself (a refused access token: refresh once, retry once); backing off is the caller's job,
so the client never sleeps except while waiting for a rate-limit slot.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from loyalty.zalo.errors import (
    ErrorKind,
    ZaloError,
    ZaloFinalError,
    ZaloRetryable,
    ZaloTokenError,
    ZaloUnexpectedAnswer,
    classify,
    error_for,
)
from loyalty.zalo.ratelimit import RateLimiter
from loyalty.zalo.tokens import TokenManager

logger = logging.getLogger(__name__)

CS_MESSAGE_PATH = "/v3.0/oa/message/cs"
TEMPLATE_MESSAGE_PATH = "/v3.0/oa/message/template"
QUOTA_PATH = "/v3.0/oa/quota/message"
ZNS_MESSAGE_PATH = "/message/template"
TAG_FOLLOWER_PATH = "/v2.0/oa/tag/tagfollower"
UNTAG_FOLLOWER_PATH = "/v2.0/oa/tag/rmfollowerfromtag"

_PHONE_SEPARATORS = re.compile(r"[\s.\-()]")
_VN_PHONE = re.compile(r"84\d{9,10}", re.ASCII)


def normalise_phone(phone: str) -> str:
    """A Vietnamese phone number as ZNS wants it: ``84`` and the national number.

    Accepts 0…, +84…, 84… and 0084…, with spaces, dots, dashes or brackets; raises
    ValueError (with the number masked) for anything else.
    """
    digits = _PHONE_SEPARATORS.sub("", phone)
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    elif digits.startswith("0"):
        digits = "84" + digits[1:]
    if digits.startswith("840"):  # "+84 (0)91…": the trunk 0 does not belong after 84
        digits = "84" + digits[3:]
    if not _VN_PHONE.fullmatch(digits):
        raise ValueError(f"not a Vietnamese phone number: {mask_phone(phone)}")
    return digits


def phone_spellings(normalised: str) -> list[str]:
    """Every spelling of ``normalised`` (84…) that an order event may carry (digits with an
    optional leading +) and that ``normalise_phone`` turns back into it: the inverse, so
    that storage can look a number up by equality."""
    national = normalised[2:]
    candidates = [prefix + national for prefix in
                  ("0", "84", "+84", "0084", "840", "+840", "00840")]
    return [spelling for spelling in candidates if _normalises_to(spelling, normalised)]


def _normalises_to(phone: str, normalised: str) -> bool:
    try:
        return normalise_phone(phone) == normalised
    except ValueError:
        return False


def mask_phone(phone: str) -> str:
    """The phone number fit for a log line: only its last 3 digits are shown."""
    digits = re.sub(r"\D", "", phone, flags=re.ASCII)
    return "*" * max(len(digits) - 3, 3) + digits[-3:]


def retry_after_from_headers(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait, from ``Retry-After`` or ``X-RateLimit-Reset``, if either says so."""
    now = time.time() if now is None else now
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            pass
    value = headers.get("X-RateLimit-Reset")
    if value:
        try:
            reset = float(value)
        except ValueError:
            return None
        # Some APIs send an epoch time here, others the seconds left.
        return max(0.0, reset - now) if reset > 1_000_000_000 else max(0.0, reset)
    return None


class _TokenRefused(Exception):
    """Zalo refused the access token; only the client's own retry logic sees this."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


class ZaloClient:
    """Sends OA messages, ZNS messages and follower tags through one requests.Session."""

    def __init__(
        self,
        *,
        api_url: str,
        business_api_url: str,
        tokens: TokenManager,
        timeout: float = 10.0,
        rate_limiter: RateLimiter | None = None,
        rate_limit_wait: float = 5.0,
        session: requests.Session | None = None,
    ) -> None:
        self._api_url = api_url.rstrip("/")
        self._business_api_url = business_api_url.rstrip("/")
        self._tokens = tokens
        self._timeout = timeout
        self._rate_limiter = rate_limiter
        self._rate_limit_wait = rate_limit_wait
        self._session = session or requests.Session()

    def close(self) -> None:
        self._session.close()

    def send_text(self, user_id: str, text: str) -> str:
        """An OA consultation message; returns Zalo's message id."""
        body = {"recipient": {"user_id": user_id}, "message": {"text": text}}
        data = self._call(self._api_url + CS_MESSAGE_PATH, body, f"text to {user_id}")
        return _message_id(data)

    def send_template(
        self, user_id: str, template_id: str, template_data: Mapping[str, Any]
    ) -> str:
        """An OA template message; returns Zalo's message id."""
        body = {
            "recipient": {"user_id": user_id},
            "template_id": template_id,
            "template_data": dict(template_data),
        }
        data = self._call(self._api_url + TEMPLATE_MESSAGE_PATH, body, f"template to {user_id}")
        return _message_id(data)

    def send_zns(
        self,
        phone: str,
        template_id: str,
        template_data: Mapping[str, Any],
        tracking_id: str,
    ) -> str:
        """A ZNS message by phone number; returns Zalo's message id."""
        masked = mask_phone(phone)
        try:
            normalised = normalise_phone(phone)
        except ValueError as exc:
            raise ZaloFinalError(None, str(exc)) from None
        body = {
            "phone": normalised,
            "template_id": template_id,
            "template_data": dict(template_data),
            "tracking_id": tracking_id,
        }
        data = self._call(self._business_api_url + ZNS_MESSAGE_PATH, body, f"ZNS to {masked}")
        return _message_id(data)

    def last_interaction(self, user_id: str) -> datetime | None:
        """When the user last interacted with the OA (None: never), from the quota call.

        Zalo's own page for this call could not be checked; third-party integrations show
        ``{"user_id": ...}`` asked and ``data.last_interaction`` answered. Anything else
        raises ``ZaloUnexpectedAnswer``: the caller then does not know the window.
        """
        data = self._call(self._api_url + QUOTA_PATH, {"user_id": user_id},
                          f"quota of {user_id}")
        return _last_interaction(data)

    def tag_follower(self, user_id: str, tag_name: str) -> None:
        body = {"user_id": user_id, "tag_name": tag_name}
        self._call(self._api_url + TAG_FOLLOWER_PATH, body, f"tag {user_id}")

    def untag_follower(self, user_id: str, tag_name: str) -> None:
        body = {"user_id": user_id, "tag_name": tag_name}
        self._call(self._api_url + UNTAG_FOLLOWER_PATH, body, f"untag {user_id}")

    def _call(self, url: str, body: Mapping[str, Any], what: str) -> dict[str, Any]:
        """POST with the current token; on a token error refresh once and retry once."""
        try:
            pair = self._tokens.ensure_fresh()
            try:
                return self._post(url, body, pair.access_token, what)
            except _TokenRefused as refused:
                logger.info("Zalo refused the access token (%s) for %s", refused.code, what)
            pair = self._tokens.refresh_after_rejection(pair.access_token)
            try:
                return self._post(url, body, pair.access_token, what)
            except _TokenRefused as refused:
                raise ZaloTokenError(
                    refused.code, f"access token refused again after a refresh: {refused.message}"
                ) from None
        except ZaloError as exc:
            logger.warning("Zalo %s failed: %s", what, exc)
            raise

    def _post(
        self, url: str, body: Mapping[str, Any], access_token: str, what: str
    ) -> dict[str, Any]:
        if self._rate_limiter is not None and not self._rate_limiter.acquire(self._rate_limit_wait):
            raise ZaloRetryable(None, "no Zalo rate-limit slot free", retry_after=1.0)
        try:
            response = self._session.post(
                url, json=body, headers={"access_token": access_token}, timeout=self._timeout
            )
        except requests.Timeout as exc:
            raise ZaloRetryable(None, f"no answer within {self._timeout}s") from exc
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise ZaloRetryable(None, f"connection failed ({type(exc).__name__})") from exc
        data = _data_or_raise(response)
        logger.debug("Zalo %s succeeded", what)
        return data


def _data_or_raise(response: requests.Response) -> dict[str, Any]:
    status = response.status_code
    if status == 429 or status >= 500:
        raise ZaloRetryable(
            None, f"HTTP {status}", retry_after=retry_after_from_headers(response.headers)
        )
    if status != 200:
        raise ZaloFinalError(None, f"HTTP {status}")
    try:
        body: Any = response.json()
    except ValueError:
        raise ZaloRetryable(None, "answer is not JSON") from None
    # Zalo reports failures as HTTP 200 with a non-zero "error"; an answer without the
    # field is not proof of success.
    if not isinstance(body, dict) or not isinstance(body.get("error"), int):
        raise ZaloRetryable(None, "answer has no error code")
    code: int = body["error"]
    if code == 0:
        data = body.get("data")
        return data if isinstance(data, dict) else {}
    message = str(body.get("message") or "")
    if classify(code) is ErrorKind.TOKEN:
        raise _TokenRefused(code, message)
    raise error_for(code, message, retry_after_from_headers(response.headers))


# Epoch times as Zalo writes them, milliseconds (13 digits) or seconds (10 digits).
_EPOCH_MS = re.compile(r"1\d{12}", re.ASCII)
_EPOCH_S = re.compile(r"1\d{9}", re.ASCII)


def _last_interaction(data: Mapping[str, Any]) -> datetime | None:
    if "last_interaction" not in data:
        raise ZaloUnexpectedAnswer(None, "quota answer without last_interaction")
    value = data["last_interaction"]
    if value is None:
        return None
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if _EPOCH_MS.fullmatch(text):
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    if _EPOCH_S.fullmatch(text):
        return datetime.fromtimestamp(int(text), UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ZaloUnexpectedAnswer(None, f"last_interaction not understood: {value!r:.40}")
    return moment


def _message_id(data: Mapping[str, Any]) -> str:
    # OA answers carry message_id, ZNS answers msg_id.
    value = data.get("message_id", data.get("msg_id"))
    return "" if value is None else str(value)
