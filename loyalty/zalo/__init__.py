"""Zalo Official Account: the HTTP client, its tokens, errors and rate limit, and a fake."""

from typing import TYPE_CHECKING, Any

from loyalty.zalo.client import ZaloClient, mask_phone, normalise_phone, retry_after_from_headers
from loyalty.zalo.errors import (
    ErrorKind,
    ZaloError,
    ZaloFinalError,
    ZaloNightBan,
    ZaloQuotaExceeded,
    ZaloRetryable,
    ZaloTokenError,
    classify,
    error_for,
)
from loyalty.zalo.ratelimit import RateLimiter, RedisRateLimiter
from loyalty.zalo.tokens import InMemoryTokenStore, TokenManager, TokenPair, TokenStore

__all__ = [
    "ErrorKind",
    "FakeZalo",
    "InMemoryTokenStore",
    "RateLimiter",
    "RedisRateLimiter",
    "TokenManager",
    "TokenPair",
    "TokenStore",
    "ZaloClient",
    "ZaloError",
    "ZaloFinalError",
    "ZaloNightBan",
    "ZaloQuotaExceeded",
    "ZaloRetryable",
    "ZaloTokenError",
    "classify",
    "error_for",
    "mask_phone",
    "normalise_phone",
    "retry_after_from_headers",
]

if TYPE_CHECKING:
    from loyalty.zalo.fake_server import FakeZalo


def __getattr__(name: str) -> Any:
    # Imported lazily so that `python -m loyalty.zalo.fake_server` does not find the
    # module already imported by its own package (runpy warns about that).
    if name == "FakeZalo":
        from loyalty.zalo.fake_server import FakeZalo

        return FakeZalo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
