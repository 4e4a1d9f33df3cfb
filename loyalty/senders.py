"""Where messages go: Zalo OA (consultation, template or ZNS) or, with no credentials, the
log. Both are adapters behind the outbox's ``Sender`` port, so the outbox never knows which
it uses; both also mirror the cross-sell tag on the OA."""

from __future__ import annotations

import logging

from loyalty.domain.messages import Channel, Outgoing
from loyalty.logs import mask_phone
from loyalty.zalo import ZaloClient

log = logging.getLogger("loyalty.messages")


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
        if message.channel is Channel.TEMPLATE:
            return self.client.send_template(message.recipient, self.template_id,
                                             {"content": message.text})
        if message.channel is Channel.ZNS:
            return self.client.send_zns(message.recipient, self.template_id,
                                        {"content": message.text},
                                        tracking_id=str(message.message_id))
        return self.client.send_text(message.recipient, message.text)

    def tag(self, user_id: str, tag_name: str, *, add: bool) -> None:
        if add:
            self.client.tag_follower(user_id, tag_name)
        else:
            self.client.untag_follower(user_id, tag_name)
