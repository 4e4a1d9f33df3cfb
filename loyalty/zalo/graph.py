"""Zalo's Graph API for the member's page: whose user access token a Mini App sent, and the
phone number a ``getPhoneNumber`` code stands for.

As Zalo's own PHP SDK (zaloplatform/zalo-php-sdk) calls it: the user access token goes in the
``access_token`` header and, with "app secret proof" on, ``appsecret_proof`` (hex HMAC-SHA256
of the token keyed with the app secret) in a header of its own. ``/v2.0/me/info`` takes the
headers ``access_token``, ``code`` and ``secret_key`` and answers
``{"data": {"number": "84…"}, "error": 0}``. Zalo refuses with HTTP 200 and a non-zero
``error`` (452 "Session key invalid" for a bad token); its message can echo what it was sent,
so it is scrubbed before it goes anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import requests

log = logging.getLogger("loyalty.zalo.graph")

ME_PATH = "/v2.0/me"
PHONE_PATH = "/v2.0/me/info"
# ``user_id_by_oa`` (the id the shop's OA knows this person by) is what Mini App backends ask
# for when the Mini App is linked to an OA; Zalo's reference pages do not list it, so it is
# used when it comes and never required.
ME_FIELDS = "id,user_id_by_oa"

# Codes that say Zalo cannot answer us now, not that the token is bad: a member must not be
# told to sign in again for them.
NOT_ABOUT_THE_TOKEN = {
    -32: "rate limit",
    # Graph answers only requests from Vietnamese addresses (seen in the field, 2026).
    -501: "region restricted: Zalo's Graph API answers only from Vietnam",
}


@dataclass(frozen=True)
class ZaloIdentity:
    """Who Zalo says a user access token belongs to."""

    zalo_id: str  # the user's id for the Zalo app that owns the Mini App
    oa_user_id: str | None = None  # the user's id for the shop's OA, when Zalo tells it


class GraphRefused(Exception):
    """Zalo answered, and refused what it was given (a token, a phone code)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"Zalo refused it ({self.code}): {self.message}"


class GraphUnavailable(Exception):
    """Zalo did not answer usefully: timeout, connection error, 5xx, an answer not understood,
    or a code that is not about the token."""


class Graph(Protocol):
    def me(self, access_token: str) -> ZaloIdentity: ...

    def phone_number(self, access_token: str, code: str) -> str: ...


def appsecret_proof(access_token: str, app_secret: str) -> str:
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


class GraphClient:
    def __init__(self, base_url: str, app_secret: str, *, timeout: float = 10.0,
                 session: requests.Session | None = None) -> None:
        self._base_url = base_url.rstrip("/")
        self._app_secret = app_secret
        self._timeout = timeout
        self._session = session or requests.Session()

    def me(self, access_token: str) -> ZaloIdentity:
        body = self._get(ME_PATH, {"access_token": access_token,
                                   "appsecret_proof": appsecret_proof(access_token,
                                                                      self._app_secret)},
                         {"fields": ME_FIELDS}, secrets=(access_token,))
        zalo_id = _text(body.get("id"))
        if zalo_id is None:
            raise GraphUnavailable("Graph /me answered without an id")
        return ZaloIdentity(zalo_id, _text(body.get("user_id_by_oa")))

    def phone_number(self, access_token: str, code: str) -> str:
        body = self._get(PHONE_PATH, {"access_token": access_token, "code": code,
                                      "secret_key": self._app_secret},
                         secrets=(access_token, code))
        data = body.get("data")
        number = _text(data.get("number")) if isinstance(data, dict) else None
        if number is None:
            raise GraphUnavailable("Graph /me/info answered without a number")
        return number

    def _get(self, path: str, headers: dict[str, str], params: dict[str, str] | None = None,
             *, secrets: tuple[str, ...]) -> dict[str, Any]:
        try:
            response = self._session.get(self._base_url + path, headers=headers, params=params,
                                         timeout=self._timeout)
        except requests.Timeout:
            raise self._unavailable(path, f"no answer within {self._timeout:g}s") from None
        except requests.RequestException as error:
            raise self._unavailable(path, f"connection failed ({type(error).__name__})") from None
        if response.status_code != 200:
            raise self._unavailable(path, f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise self._unavailable(path, "answer is not JSON") from None
        if not isinstance(body, dict):
            raise self._unavailable(path, "answer is not a JSON object")
        code = body.get("error", 0)
        if not isinstance(code, int):
            raise self._unavailable(path, "answer has no usable error code")
        if code == 0:
            return body
        message = _scrub(str(body.get("message") or ""), secrets)
        if code in NOT_ABOUT_THE_TOKEN:
            raise self._unavailable(path, f"error {code} ({NOT_ABOUT_THE_TOKEN[code]}): "
                                          f"{message}")
        log.info("Zalo Graph %s refused: %s %s", path, code, message)
        raise GraphRefused(code, message)

    @staticmethod
    def _unavailable(path: str, reason: str) -> GraphUnavailable:
        log.warning("Zalo Graph %s unavailable: %s", path, reason)
        return GraphUnavailable(reason)


def _text(value: Any) -> str | None:
    # Ids are big numbers: Zalo sends them as strings, but a number must not lose digits.
    if isinstance(value, bool) or value is None or value == "":
        return None
    return str(value) if isinstance(value, str | int) else None


def _scrub(message: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "[redacted]")
    return message[:200]
