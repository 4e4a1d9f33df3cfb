"""Where messages go: Zalo OA (consultation, template or ZNS) or, with no credentials, the log.

Both are adapters behind one narrow interface, so the outbox never knows which it uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import redis
from sqlalchemy.orm import Session, sessionmaker

from loyalty.logs import mask_phone
from loyalty.settings import Settings
from loyalty.storage.zalo_tokens import DbTokenStore
from loyalty.zalo import RedisRateLimiter, TokenManager, TokenPair, ZaloClient

log = logging.getLogger("loyalty.messages")

LOG_CHANNEL = "log"


@dataclass(frozen=True)
class Outgoing:
    message_id: int
    channel: str
    recipient: str
    text: str


class Sender(Protocol):
    def send(self, message: Outgoing) -> str:
        """Deliver; returns the provider's message id or raises a ``ZaloError``."""

    def tag(self, user_id: str, tag_name: str, *, add: bool) -> None: ...


class LogSender:
    """No Zalo credentials: the message is written to the log (and stays in the outbox)."""

    def send(self, message: Outgoing) -> str:
        log.info("message written to the log instead of Zalo", extra={
            "message_id": message.message_id, "recipient": mask_phone(message.recipient),
            "text": message.text})
        return f"log-{message.message_id}"

    def tag(self, user_id: str, tag_name: str, *, add: bool) -> None:
        log.info("OA tag change written to the log", extra={
            "user_id": user_id, "tag": tag_name, "add": add})


class ZaloSender:
    def __init__(self, client: ZaloClient, template_id: str):
        self.client = client
        self.template_id = template_id

    def send(self, message: Outgoing) -> str:
        if message.channel == "template":
            return self.client.send_template(message.recipient, self.template_id,
                                             {"content": message.text})
        if message.channel == "zns":
            return self.client.send_zns(message.recipient, self.template_id,
                                        {"content": message.text},
                                        tracking_id=str(message.message_id))
        return self.client.send_text(message.recipient, message.text)

    def tag(self, user_id: str, tag_name: str, *, add: bool) -> None:
        if add:
            self.client.tag_follower(user_id, tag_name)
        else:
            self.client.untag_follower(user_id, tag_name)


def channel_for(settings: Settings) -> str:
    return settings.zalo_channel if settings.zalo_configured else LOG_CHANNEL


def make_sender(settings: Settings, sessions: sessionmaker[Session], redis_url: str) -> Sender:
    if not settings.zalo_configured:
        return LogSender()
    client = redis.Redis.from_url(redis_url)
    tokens = TokenManager(
        DbTokenStore(sessions), client, app_id=settings.zalo_app_id,
        secret_key=settings.zalo_secret_key.get_secret_value(),
        oauth_url=settings.zalo_oauth_url, http_timeout=settings.zalo_timeout_seconds,
        lock_timeout=max(60.0, 3 * settings.zalo_timeout_seconds),
        # The configured pair is the first one; its age is unknown, so it is assumed
        # fresh and a rejection (-216) refreshes it.
        initial=TokenPair(settings.zalo_access_token.get_secret_value(),
                          settings.zalo_refresh_token.get_secret_value(),
                          datetime.now(UTC) + timedelta(hours=24)))
    limiter = RedisRateLimiter(client, "loyalty:zalo:rate", settings.zalo_rate_per_second)
    return ZaloSender(ZaloClient(api_url=settings.zalo_api_url,
                                 business_api_url=settings.zalo_business_api_url,
                                 tokens=tokens, timeout=settings.zalo_timeout_seconds,
                                 rate_limiter=limiter), settings.zalo_template_id)
