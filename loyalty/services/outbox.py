"""The outbox: every message is recorded before it is tried and its result after.

A send moves its message from ``pending`` to ``sending`` in one transaction and only then
calls the sender, so a second delivery of the same task finds it ``sending`` and does
nothing. A worker that dies mid-send leaves it ``sending``; the relay reports such messages
as ``unknown`` instead of sending them again. The outbox knows no campaign: what follows a
sent message of some kind (the cross-sell tag after a nudge) is a reaction handed in by the
caller, run in the same transaction that records the message as sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from loyalty.domain.messages import (
    SENDABLE_STATUSES,
    Channel,
    MessageKind,
    MessageStatus,
    Outgoing,
    next_morning,
    next_quota_day,
    recipient,
    retry_delay,
)
from loyalty.storage.db import transaction
from loyalty.storage.queries import insert_if_absent
from loyalty.storage.tables import Message
from loyalty.zalo import (
    ZaloError,
    ZaloNightBan,
    ZaloQuotaExceeded,
    ZaloRetryable,
    ZaloTokenError,
)

if TYPE_CHECKING:
    from loyalty.bootstrap import Loyalty

log = logging.getLogger("loyalty.messages")

# A send still ``sending`` after this long died with its worker.
SENDING_TIMEOUT = timedelta(minutes=10)
# A message put on the queue that long ago and still pending lost its task (Redis restart).
REQUEUE_AFTER = timedelta(minutes=15)
TOKEN_TROUBLE_PAUSE = timedelta(minutes=15)


class Sender(Protocol):
    """Where messages go: Zalo, or the log when no credentials are configured."""

    def send(self, message: Outgoing) -> str:
        """Deliver; returns the provider's message id or raises a ``ZaloError``."""


class Recipient(Protocol):
    """Whom a message is for: a customer row, or a member as the ledger holds it."""

    id: str
    phone: str | None
    zalo_user_id: str | None


# Work to do once the transaction that recorded a message as sent has committed.
AfterCommit = Callable[[], None]
# What follows a sent message of one kind, inside the transaction that records it as sent.
OnSent = Callable[[Session, Message], AfterCommit | None]


@dataclass(frozen=True)
class SendResult:
    status: str
    retry_in: float | None = None


def new_message(session: Session, *, kind: MessageKind, customer: Recipient, channel: Channel,
                text: str, now: datetime, period: date | None = None,
                order_id: str | None = None) -> int | None:
    """Add a pending message unless one of its kind already exists for the period/order."""
    key = ["kind", "order_id"] if order_id is not None else ["kind", "customer_id", "period"]
    return insert_if_absent(session, Message, {
        "kind": kind, "customer_id": customer.id, "period": period, "order_id": order_id,
        "channel": channel,
        "recipient": recipient(channel, phone=customer.phone,
                               zalo_user_id=customer.zalo_user_id),
        "text": text, "status": MessageStatus.PENDING, "attempts": 0, "created_at": now,
        "updated_at": now}, key, returning="id")


def dispatch(loyalty: Loyalty, message_ids: list[int] | tuple[int, ...]) -> None:
    """Hand messages recorded by a committed transaction to the senders."""
    if not message_ids:
        return
    loyalty.tasks.send_messages(message_ids)
    with transaction(loyalty.sessions) as session:
        session.execute(update(Message).where(Message.id.in_(message_ids))
                        .values(enqueued_at=loyalty.clock()))


def _claim(loyalty: Loyalty, message_id: int, now: datetime) -> tuple[Outgoing, int] | None:
    """Move a due message to ``sending``; returns it and its attempt number."""
    with transaction(loyalty.sessions) as session:
        message = session.scalars(select(Message).where(Message.id == message_id)
                                  .with_for_update()).one_or_none()
        if message is None or message.status not in SENDABLE_STATUSES:
            return None
        if message.not_before is not None and message.not_before > now:
            return None
        if not message.recipient:
            message.status = MessageStatus.FAILED
            message.error = "no way to reach this customer"
            return None
        message.status = MessageStatus.SENDING
        message.attempts += 1
        message.updated_at = now
        return Outgoing(message.id, Channel(message.channel), message.recipient,
                        message.text), message.attempts


def _finish(loyalty: Loyalty, message_id: int, on_sent: Mapping[MessageKind, OnSent],
            **changes: object) -> None:
    with transaction(loyalty.sessions) as session:
        message = session.get_one(Message, message_id)
        for name, value in changes.items():
            setattr(message, name, value)
        message.updated_at = loyalty.clock()
        reaction = on_sent.get(MessageKind(message.kind))
        after_commit = reaction(session, message) \
            if reaction is not None and message.status == MessageStatus.SENT else None
    if after_commit is not None:
        after_commit()


def send_message(loyalty: Loyalty, message_id: int, sender: Sender,
                 on_sent: Mapping[MessageKind, OnSent] | None = None) -> SendResult:
    on_sent = on_sent or {}
    now = loyalty.clock()
    claimed = _claim(loyalty, message_id, now)
    if claimed is None:
        return SendResult("skipped")
    outgoing, attempts = claimed
    try:
        provider_id = sender.send(outgoing)
    except ZaloRetryable as error:
        delay = error.retry_after or retry_delay(attempts)
        _finish(loyalty, message_id, on_sent, status=MessageStatus.PENDING,
                error_code=error.code, error=str(error),
                not_before=now + timedelta(seconds=delay))
        return SendResult(MessageStatus.PENDING, retry_in=delay)
    except (ZaloNightBan, ZaloQuotaExceeded, ZaloTokenError) as error:
        if isinstance(error, ZaloNightBan):
            until = next_morning(now, loyalty.zone)
        elif isinstance(error, ZaloQuotaExceeded):
            until = next_quota_day(now, loyalty.zone)
        else:
            until = now + TOKEN_TROUBLE_PAUSE
        _finish(loyalty, message_id, on_sent, status=MessageStatus.HELD, not_before=until,
                error_code=error.code, error=str(error))
        return SendResult(MessageStatus.HELD)
    except ZaloError as error:  # final for this customer: -213 not a follower, -217 …
        _finish(loyalty, message_id, on_sent, status=MessageStatus.FAILED,
                error_code=error.code, error=str(error))
        log.warning("message failed for good", extra={"message_id": message_id,
                                                     "error": str(error)})
        return SendResult(MessageStatus.FAILED)
    _finish(loyalty, message_id, on_sent, status=MessageStatus.SENT, sent_at=loyalty.clock(),
            provider_message_id=provider_id, error_code=None, error=None, not_before=None)
    return SendResult(MessageStatus.SENT)


def relay(loyalty: Loyalty, now: datetime) -> list[int]:
    """Queue pending messages whose task was lost and held ones that are due by ``now``.

    Also reports sends left ``sending`` by a dead worker as ``unknown``.
    """
    with transaction(loyalty.sessions) as session:
        session.execute(update(Message).where(
            Message.status == MessageStatus.SENDING,
            Message.updated_at < now - SENDING_TIMEOUT)
            .values(status=MessageStatus.UNKNOWN, updated_at=now,
                    error="the worker stopped while sending; not sent again"))
        due = list(session.scalars(select(Message.id).where(
            Message.status.in_(SENDABLE_STATUSES),
            or_(Message.not_before.is_(None), Message.not_before <= now),
            or_(Message.status == MessageStatus.HELD, Message.enqueued_at.is_(None),
                Message.enqueued_at < now - REQUEUE_AFTER)).with_for_update(skip_locked=True)))
        if due:
            session.execute(update(Message).where(Message.id.in_(due))
                            .values(status=MessageStatus.PENDING))
    # Marked queued by dispatch only once the tasks are on the queue: a relay that dies in
    # between leaves them to the next relay.
    dispatch(loyalty, due)
    return due
