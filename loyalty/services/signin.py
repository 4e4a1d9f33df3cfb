"""Signing a member in on the member's page (SPEC §4): the Zalo user access token the Mini
App sends is checked with Zalo's Graph API, and nothing the page says about itself counts.

A verified token is remembered in Redis under a SHA-256 of it (the token itself is stored
nowhere): for ``miniapp_token_cache_minutes`` Zalo is not asked again, and for
``miniapp_token_grace_minutes`` more it still counts while Zalo cannot be reached. A token Zalo
refuses is forgotten at once. Without Redis every request asks Zalo.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from typing import TYPE_CHECKING

import redis

from loyalty.zalo.graph import GraphRefused, GraphUnavailable, ZaloIdentity

if TYPE_CHECKING:
    from loyalty.bootstrap import Loyalty

log = logging.getLogger("loyalty.signin")

CACHE_PREFIX = "loyalty:signin:"


class NotSignedIn(Exception):
    """No token, or one Zalo refuses (HTTP 401)."""


class SignInUnavailable(Exception):
    """Zalo cannot tell now and the cache does not know the token (HTTP 503)."""


def cache_key(access_token: str) -> str:
    return CACHE_PREFIX + hashlib.sha256(access_token.encode()).hexdigest()


def sign_in(loyalty: Loyalty, access_token: str | None) -> ZaloIdentity:
    """Who ``access_token`` belongs to, as Zalo says."""
    if not access_token:
        raise NotSignedIn("no X-Zalo-Access-Token")
    settings = loyalty.settings
    if not settings.miniapp_secret:
        log.error("member sign-in needs LOYALTY_MINIAPP_SECRET_KEY (or LOYALTY_ZALO_SECRET_KEY)")
        raise SignInUnavailable("member sign-in is not configured")
    fresh_for = settings.miniapp_token_cache_minutes * 60
    keep_for = fresh_for + settings.miniapp_token_grace_minutes * 60
    key = cache_key(access_token)
    now = loyalty.clock().timestamp()
    cached = _recall(loyalty, key)
    if cached is not None and now - cached[1] < fresh_for:
        return cached[0]
    try:
        identity = loyalty.graph.me(access_token)
    except GraphRefused as refused:
        _forget(loyalty, key)
        raise NotSignedIn(f"Zalo refused the access token ({refused.code})") from None
    except GraphUnavailable as unavailable:
        if cached is not None and now - cached[1] < keep_for:
            log.info("Zalo is unavailable; a token verified %ds ago counts", now - cached[1])
            return cached[0]
        raise SignInUnavailable(f"Zalo cannot verify the token now: {unavailable}") from None
    if keep_for > 0:
        _remember(loyalty, key, identity, now, keep_for)
    return identity


def _recall(loyalty: Loyalty, key: str) -> tuple[ZaloIdentity, float] | None:
    try:
        raw = loyalty.redis.get(key)
    except redis.RedisError as error:
        log.warning("token cache unavailable: %s", type(error).__name__)
        return None
    if raw is None:
        return None
    try:
        document = json.loads(raw)
        return ZaloIdentity(**document["identity"]), float(document["verified_at"])
    except (ValueError, KeyError, TypeError):
        return None  # written by another version: ask Zalo


def _remember(loyalty: Loyalty, key: str, identity: ZaloIdentity, now: float,
              seconds: int) -> None:
    document = {"identity": asdict(identity), "verified_at": now}
    try:
        loyalty.redis.set(key, json.dumps(document), ex=seconds)
    except redis.RedisError as error:
        log.warning("token cache unavailable: %s", type(error).__name__)


def _forget(loyalty: Loyalty, key: str) -> None:
    try:
        loyalty.redis.delete(key)
    except redis.RedisError as error:
        log.warning("token cache unavailable: %s", type(error).__name__)
