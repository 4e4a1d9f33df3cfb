"""Zalo Official Account: the HTTP client, its tokens, errors and rate limit."""

from loyalty.zalo.client import (
    ZaloClient,
    mask_phone,
    normalise_phone,
    phone_spellings,
    retry_after_from_headers,
)
from loyalty.zalo.errors import (
    ErrorKind,
    ZaloError,
    ZaloFinalError,
    ZaloNightBan,
    ZaloQuotaExceeded,
    ZaloRetryable,
    ZaloTokenError,
    ZaloUnexpectedAnswer,
    classify,
    error_for,
)
from loyalty.zalo.ratelimit import RateLimiter, RedisRateLimiter
from loyalty.zalo.tokens import TokenManager, TokenPair, TokenStore

__all__ = [
    "ErrorKind",
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
    "ZaloUnexpectedAnswer",
    "classify",
    "error_for",
    "mask_phone",
    "normalise_phone",
    "phone_spellings",
    "retry_after_from_headers",
]
