"""Where messages go: Zalo OA (consultation, template by user id or ZNS by phone) or, with no
credentials, the log. Both are adapters behind the outbox's ``Sender`` port, so the outbox
never knows which it uses; both also tell a member's last interaction with the OA (the
consultation window) and mirror the cross-sell tag on the OA."""

from __future__ import annotations

import logging
from datetime import datetime

import redis

from loyalty.domain.messages import Channel, Outgoing
from loyalty.logs import mask_phone
from loyalty.zalo import ZaloClient

log = logging.getLogger("loyalty.messages")

WINDOW_KEY = "loyalty:zalo:last-interaction:"
NEVER = "never"


class LogSender:
    """No Zalo credentials: the message is written to the log (and stays in the outbox)."""

    def send(self, message: Outgoing) -> str:
        log.info("message written to the log instead of Zalo", extra={
            "message_id": message.message_id, "recipient": mask_phone(message.recipient),
            "text": message.text})
        return f"log-{message.message_id}"

    def last_interaction(self, user_id: str) -> datetime | None:
        return None  # no OA to have talked to

    def tag(self, user_id: str, tag_name: str, *, add: bool) -> None:
        log.info("OA tag change written to the log", extra={
            "user_id": user_id, "tag": tag_name, "add": add})


class ZaloSender:
    def __init__(self, client: ZaloClient, cache: redis.Redis, cache_seconds: int):
        self.client = client
        self.cache = cache
        self.cache_seconds = cache_seconds

    def send(self, message: Outgoing) -> str:
        if message.channel is Channel.CONSULTATION:
            return self.client.send_text(message.recipient, message.text)
        if message.channel is Channel.TEMPLATE:
            return self.client.send_template(message.recipient, message.template_id,
                                             message.template_data)
        if message.channel is Channel.ZNS:
            return self.client.send_zns(message.recipient, message.template_id,
                                        message.template_data,
                                        tracking_id=str(message.message_id))
        raise ValueError(f"not a Zalo channel: {message.channel}")

    def last_interaction(self, user_id: str) -> datetime | None:
        """From Zalo's quota call, reused for ``cache_seconds``: a nudge run asks once per
        member, not once per message. Raises ``ZaloError`` when it cannot be read; that is
        not cached, so the next message asks again."""
        key = WINDOW_KEY + user_id
        cached = self.cache.get(key) if self.cache_seconds else None
        if cached is not None:
            text = cached.decode()
            return None if text == NEVER else datetime.fromisoformat(text)
        last = self.client.last_interaction(user_id)
        if self.cache_seconds:
            self.cache.set(key, NEVER if last is None else last.isoformat(),
                           ex=self.cache_seconds)
        return last

    def tag(self, user_id: str, tag_name: str, *, add: bool) -> None:
        if add:
            self.client.tag_follower(user_id, tag_name)
        else:
            self.client.untag_follower(user_id, tag_name)
