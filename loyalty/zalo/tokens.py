"""Zalo OA access tokens: where they are kept and how they are refreshed.

Zalo's refresh token is single-use: every refresh invalidates it and hands out a new one.
Two workers refreshing with the same refresh token, or a new pair that is used before it is
stored, can leave the shop with no valid token at all until someone authorises the OA again
by hand. Hence: one refresh at a time across all processes (a Redis lock that outlives the
HTTP call), a reload inside the lock, the new pair saved before anything uses it, and a
marker so that no refresh token is ever sent twice.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import redis
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError

from loyalty.zalo.errors import ZaloRetryable, ZaloTokenError

logger = logging.getLogger(__name__)

# Zalo documents about 25 h; used only when an answer's expires_in cannot be read.
DEFAULT_ACCESS_TOKEN_LIFETIME = timedelta(seconds=90000)
# Refresh tokens live about 3 months; the "already sent" marker must outlive them.
_SPENT_MARKER_TTL = timedelta(days=100)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TokenPair:
    # repr=False keeps tokens out of logs and tracebacks that print the pair.
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime

    def __post_init__(self) -> None:
        if self.expires_at.tzinfo is None:
            raise ValueError("TokenPair.expires_at must be timezone-aware")

    def expires_within(self, margin: timedelta, now: datetime) -> bool:
        return self.expires_at - now < margin

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at <= now


class TokenStore(Protocol):
    """Where the current pair lives; the production one is a database table."""

    def load(self) -> TokenPair | None: ...

    def save(self, pair: TokenPair) -> None: ...


class TokenManager:
    """Hands out the current access token and refreshes it, once, for all workers."""

    def __init__(
        self,
        store: TokenStore,
        redis_client: redis.Redis,
        *,
        app_id: str,
        secret_key: str,
        oauth_url: str,
        initial: TokenPair | None = None,
        session: requests.Session | None = None,
        http_timeout: float = 10.0,
        lock_timeout: float = 60.0,
        lock_wait: float | None = None,
        refresh_margin: timedelta = timedelta(hours=2),
        lock_name: str = "loyalty:zalo:token-refresh",
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        # requests applies the timeout to the connect and to the read separately, so one
        # call can last about twice as long; the lock must still be held when it ends, or a
        # second worker could refresh with the same (now spent) refresh token.
        if lock_timeout <= 2 * http_timeout:
            raise ValueError(
                f"lock_timeout ({lock_timeout}s) must be longer than twice the HTTP timeout "
                f"({http_timeout}s)"
            )
        self._store = store
        self._redis = redis_client
        self._app_id = app_id
        self._secret_key = secret_key
        self._refresh_url = oauth_url.rstrip("/") + "/v4/oa/access_token"
        self._initial = initial
        self._session = session or requests.Session()
        self._http_timeout = http_timeout
        self._lock_timeout = lock_timeout
        # By default a waiter gives up only once the holder's lock would have expired.
        self._lock_wait = lock_timeout if lock_wait is None else lock_wait
        self._refresh_margin = refresh_margin
        self._lock_name = lock_name
        self._clock = clock

    def current(self) -> TokenPair:
        """The stored pair; an empty store is seeded with the initial pair."""
        pair = self._store.load()
        if pair is not None:
            return pair
        # Seeding under the lock: a worker that saw an empty store must not overwrite a
        # pair that another worker has meanwhile seeded and refreshed.
        with self._refresh_lock(blocking=True) as acquired:
            if not acquired:
                raise ZaloRetryable(None, "timed out waiting for the Zalo token lock")
            return self._load_locked()

    def ensure_fresh(self, now: datetime | None = None) -> TokenPair:
        """The current pair, refreshed first when less than ``refresh_margin`` is left."""
        now = now or self._clock()
        pair = self.current()
        if not pair.expires_within(self._refresh_margin, now):
            return pair
        expired = pair.is_expired(now)
        try:
            # While the token still works, nobody needs to queue behind a refresh that
            # another worker is already doing.
            with self._refresh_lock(blocking=expired) as acquired:
                if not acquired:
                    if expired:
                        raise ZaloRetryable(None, "timed out waiting for the Zalo token lock")
                    return pair
                latest = self._load_locked()
                if not latest.expires_within(self._refresh_margin, now):
                    return latest  # another worker refreshed it
                pair = latest
                return self._refresh(latest)
        except (ZaloTokenError, ZaloRetryable) as exc:
            if pair.is_expired(now):
                raise
            # An early refresh that failed is not yet a failure to send: the token still
            # works for a while, and the error is loud in the log.
            logger.error("proactive Zalo token refresh failed; using the current token: %s", exc)
            return pair

    def refresh_after_rejection(self, rejected_access_token: str) -> TokenPair:
        """A fresh pair after Zalo refused ``rejected_access_token``.

        Refreshes only if the stored access token is still the rejected one; when another
        worker has refreshed meanwhile, its pair is returned as is.
        """
        with self._refresh_lock(blocking=True) as acquired:
            if not acquired:
                raise ZaloRetryable(None, "timed out waiting for another worker's token refresh")
            latest = self._load_locked()
            if latest.access_token != rejected_access_token:
                return latest
            return self._refresh(latest)

    def _load_locked(self) -> TokenPair:
        pair = self._store.load()
        if pair is not None:
            return pair
        if self._initial is None:
            raise ZaloTokenError(None, "no Zalo token pair is stored and none was configured")
        self._store.save(self._initial)
        return self._initial

    @contextmanager
    def _refresh_lock(self, *, blocking: bool) -> Iterator[bool]:
        lock = self._redis.lock(
            self._lock_name, timeout=self._lock_timeout, blocking_timeout=self._lock_wait
        )
        acquired = bool(lock.acquire(blocking=blocking))
        try:
            yield acquired
        finally:
            if acquired:
                try:
                    lock.release()
                except redis.exceptions.LockError:
                    logger.warning(
                        "the Zalo token lock expired before it was released; "
                        "lock_timeout (%ss) is too short",
                        self._lock_timeout,
                    )

    def _refresh(self, old: TokenPair) -> TokenPair:
        """Spend ``old.refresh_token`` for a new pair; the caller holds the lock."""
        spent_key = self._spent_key(old.refresh_token)
        # Marked before sending: whatever happens to the request, it may have been spent.
        if not self._redis.set(spent_key, "1", nx=True, ex=_SPENT_MARKER_TTL):
            raise ZaloTokenError(
                None,
                "the stored Zalo refresh token was already sent once and is not sent again; "
                "authorise the OA again to get a new token pair",
            )
        requested_at = self._clock()
        logger.info("refreshing the Zalo access token")
        try:
            response = self._session.post(
                self._refresh_url,
                data={
                    "app_id": self._app_id,
                    "refresh_token": old.refresh_token,
                    "grant_type": "refresh_token",
                },
                headers={"secret_key": self._secret_key},
                timeout=self._http_timeout,
            )
        except requests.RequestException as exc:
            if _never_sent(exc):
                self._redis.delete(spent_key)
                raise ZaloRetryable(
                    None, f"cannot reach Zalo OAuth to refresh the token ({type(exc).__name__})"
                ) from exc
            raise ZaloTokenError(
                None,
                f"Zalo token refresh failed ({type(exc).__name__}); the refresh token may be spent",
            ) from exc
        new = _pair_from_answer(response, requested_at)
        self._store.save(new)
        logger.info("Zalo access token refreshed; valid until %s", new.expires_at.isoformat())
        return new

    def _spent_key(self, refresh_token: str) -> str:
        # A digest, so that Redis never holds the secret itself.
        digest = hashlib.sha256(refresh_token.encode()).hexdigest()
        return f"{self._lock_name}:spent:{digest}"


def _pair_from_answer(response: requests.Response, requested_at: datetime) -> TokenPair:
    if response.status_code != 200:
        raise ZaloTokenError(None, f"Zalo token refresh answered HTTP {response.status_code}")
    try:
        body: Any = response.json()
    except ValueError:
        raise ZaloTokenError(
            None, "Zalo token refresh answered something other than JSON"
        ) from None
    if not isinstance(body, dict):
        raise ZaloTokenError(None, "Zalo token refresh answered an unexpected JSON value")
    access = body.get("access_token")
    refresh = body.get("refresh_token")
    # OAuth errors come back as HTTP 200 too; only a complete pair counts as success.
    if body.get("error") or body.get("error_name") or not access or not refresh:
        code = body.get("error")
        reason = body.get("error_name") or body.get("error_description") or body.get("message")
        raise ZaloTokenError(
            code if isinstance(code, int) else None,
            f"Zalo refused the token refresh: {reason or 'no token pair in the answer'}",
        )
    return TokenPair(str(access), str(refresh), requested_at + _lifetime(body.get("expires_in")))


def _lifetime(expires_in: object) -> timedelta:
    # Zalo sends expires_in as a string ("90000"). The expiry counts from when the request
    # was sent, which errs on the early side.
    try:
        seconds = int(str(expires_in))
    except ValueError:
        logger.warning("Zalo token answer has no readable expires_in; assuming 25 h")
        return DEFAULT_ACCESS_TOKEN_LIFETIME
    return timedelta(seconds=seconds)


def _never_sent(exc: requests.RequestException) -> bool:
    """True only when the request certainly never reached Zalo (the connection never opened)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError) or not exc.args:
        return False
    reason = exc.args[0]
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError)
