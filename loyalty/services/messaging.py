"""The outbox: every message is recorded before it is tried and its result after.

A send moves its message from ``pending`` to ``sending`` in one transaction and only then
calls Zalo, so a second delivery of the same task finds it ``sending`` and does nothing. A
worker that dies mid-send leaves it ``sending``; the sweep reports such messages as
``unknown`` instead of sending them again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from loyalty.bootstrap import Loyalty
from loyalty.domain.crosssell import next_morning, tag_expires_at
from loyalty.services.channels import Outgoing, Sender
from loyalty.storage.db import transaction
from loyalty.storage.queries import insert_if_absent
from loyalty.storage.tables import Customer, CustomerTag, Message
from loyalty.zalo import (
    ZaloError,
    ZaloNightBan,
    ZaloQuotaExceeded,
    ZaloRetryable,
    ZaloTokenError,
)

log = logging.getLogger("loyalty.messages")

# A send still ``sending`` after this long died with its worker.
SENDING_TIMEOUT = timedelta(minutes=10)
# A message put on the queue that long ago and still pending lost its task (Redis restart).
REQUEUE_AFTER = timedelta(minutes=15)
TOKEN_TROUBLE_PAUSE = timedelta(minutes=15)


@dataclass(frozen=True)
class SendResult:
    status: str
    retry_in: float | None = None
    tag_added: tuple[str, str] | None = None  # (zalo user id, tag) to mirror on the OA


def new_message(session: Session, *, kind: str, customer: Customer, channel: str,
                text: str, now: datetime, period: date | None = None,
                order_id: str | None = None) -> int | None:
    """Add a pending message unless one of its kind already exists for the period/order."""
    recipient = customer.phone if channel == "zns" else customer.zalo_user_id
    key = ["kind", "order_id"] if order_id is not None else ["kind", "customer_id", "period"]
    return insert_if_absent(session, Message, {
        "kind": kind, "customer_id": customer.id, "period": period, "order_id": order_id,
        "channel": channel, "recipient": recipient, "text": text, "status": "pending",
        "attempts": 0, "created_at": now, "updated_at": now}, key, returning="id")


def _claim(loyalty: Loyalty, message_id: int, now: datetime) -> tuple[Outgoing, int] | None:
    """Move a due message to ``sending``; returns it and its attempt number."""
    with transaction(loyalty.sessions) as session:
        message = session.scalars(select(Message).where(Message.id == message_id)
                                  .with_for_update()).one_or_none()
        if message is None or message.status not in ("pending", "held"):
            return None
        if message.not_before is not None and message.not_before > now:
            return None
        if not message.recipient:
            message.status, message.error = "failed", "no way to reach this customer"
            return None
        message.status = "sending"
        message.attempts += 1
        message.updated_at = now
        return Outgoing(message.id, message.channel, message.recipient, message.text), \
            message.attempts


def _finish(loyalty: Loyalty, message_id: int, **changes: object) -> Message:
    with transaction(loyalty.sessions) as session:
        message = session.get_one(Message, message_id)
        for name, value in changes.items():
            setattr(message, name, value)
        message.updated_at = loyalty.clock()
        if message.status == "sent" and message.kind == "nudge":
            assert message.sent_at is not None
            session.add(CustomerTag(
                customer_id=message.customer_id, name=loyalty.program.crosssell.tag_name,
                message_id=message.id, set_at=message.sent_at,
                expires_at=tag_expires_at(loyalty.program, message.sent_at)))
        return message


def backoff(attempts: int) -> float:
    # Kept far below the broker's visibility timeout: a retry is an ETA task held in memory.
    return float(min(60, 2 ** attempts))


def send_message(loyalty: Loyalty, message_id: int, sender: Sender) -> SendResult:
    now = loyalty.clock()
    claimed = _claim(loyalty, message_id, now)
    if claimed is None:
        return SendResult("skipped")
    outgoing, attempts = claimed
    zone = ZoneInfo(loyalty.settings.timezone)
    try:
        provider_id = sender.send(outgoing)
    except ZaloRetryable as error:
        delay = error.retry_after or backoff(attempts)
        _finish(loyalty, message_id, status="pending", error_code=error.code, error=str(error),
                not_before=now + timedelta(seconds=delay))
        return SendResult("pending", retry_in=delay)
    except (ZaloNightBan, ZaloQuotaExceeded, ZaloTokenError) as error:
        if isinstance(error, ZaloNightBan):
            until = next_morning(now, zone)
        elif isinstance(error, ZaloQuotaExceeded):
            until = next_morning(now + timedelta(days=1), zone, time(0, 5))
        else:
            until = now + TOKEN_TROUBLE_PAUSE
        _finish(loyalty, message_id, status="held", not_before=until, error_code=error.code,
                error=str(error))
        return SendResult("held")
    except ZaloError as error:  # final for this customer: -213 not a follower, -217 …
        _finish(loyalty, message_id, status="failed", error_code=error.code, error=str(error))
        log.warning("message failed for good", extra={"message_id": message_id,
                                                     "error": str(error)})
        return SendResult("failed")
    sent = _finish(loyalty, message_id, status="sent", sent_at=loyalty.clock(),
                   provider_message_id=provider_id, error_code=None, error=None,
                   not_before=None)
    mirror = (outgoing.recipient, loyalty.program.crosssell.tag_name) \
        if sent.kind == "nudge" and loyalty.program.crosssell.mirror_oa_tag \
        and outgoing.channel != "zns" else None
    return SendResult("sent", tag_added=mirror)


def messages_to_enqueue(loyalty: Loyalty, now: datetime) -> list[int]:
    """Pending messages whose task was lost, and held ones that are due; marks them queued.

    Also reports sends left ``sending`` by a dead worker as ``unknown``.
    """
    with transaction(loyalty.sessions) as session:
        session.execute(update(Message).where(
            Message.status == "sending", Message.updated_at < now - SENDING_TIMEOUT)
            .values(status="unknown", updated_at=now,
                    error="the worker stopped while sending; not sent again"))
        due = list(session.scalars(select(Message.id).where(
            Message.status.in_(("pending", "held")),
            or_(Message.not_before.is_(None), Message.not_before <= now),
            or_(Message.status == "held", Message.enqueued_at.is_(None),
                Message.enqueued_at < now - REQUEUE_AFTER)).with_for_update(skip_locked=True)))
        if due:
            session.execute(update(Message).where(Message.id.in_(due))
                            .values(enqueued_at=now, status="pending"))
        return due


def mark_enqueued(loyalty: Loyalty, message_ids: list[int]) -> None:
    if message_ids:
        with transaction(loyalty.sessions) as session:
            session.execute(update(Message).where(Message.id.in_(message_ids))
                            .values(enqueued_at=loyalty.clock()))
