"""The outbox: every message is recorded before it is tried and its result after.

A message goes through its kind's channel plan (``domain.channels``). Each call to a channel
is preceded, in one transaction, by the message being ``sending`` and an attempt being
written ``started``; a second delivery of the same task finds it ``sending`` and does
nothing. A channel that refuses the member for good moves the message on to the next one
without ever leaving ``sending``, so the claim covers every channel it tries: a worker that
dies anywhere on the way leaves it ``sending``, and the relay reports it ``unknown`` instead
of sending it again. At most one message reaches the member.

The outbox knows no campaign: what follows a sent message of some kind (the cross-sell tag
after a nudge) is a reaction handed in by the caller, run in the same transaction that
records the message as sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from loyalty.domain.channels import (
    TEMPLATED,
    Contacts,
    SkipReason,
    Window,
    in_night_ban,
    next_channel,
    recipient,
    template_data,
    window_at,
)
from loyalty.domain.messages import (
    SENDABLE_STATUSES,
    AttemptOutcome,
    Channel,
    MessageKind,
    MessageStatus,
    Outgoing,
    next_morning,
    next_quota_day,
    retry_delay,
)
from loyalty.program import Program
from loyalty.storage.db import transaction
from loyalty.storage.queries import insert_if_absent
from loyalty.storage.tables import Customer, Message, MessageAttempt
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

    def last_interaction(self, user_id: str) -> datetime | None:
        """The member's last interaction with the OA (None: never); raises ``ZaloError``
        when it cannot be read."""


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


NOT_DUE = SendResult("not due")


def new_message(session: Session, program: Program, *, kind: MessageKind,
                customer: Recipient, fields: dict[str, str], now: datetime,
                period: date | None = None, order_id: str | None = None) -> int | None:
    """Add a pending message unless one of its kind already exists for the period/order.

    ``fields`` fill both its text and, on a template channel, the template's data. The
    channel is chosen when it is sent.
    """
    key = ["kind", "order_id"] if order_id is not None else ["kind", "customer_id", "period"]
    return insert_if_absent(session, Message, {
        "kind": kind, "customer_id": customer.id, "period": period, "order_id": order_id,
        "text": program.messages.text(kind, fields), "fields": fields,
        "status": MessageStatus.PENDING, "attempts": 0, "created_at": now,
        "updated_at": now}, key, returning="id")


def dispatch(loyalty: Loyalty, message_ids: list[int] | tuple[int, ...]) -> None:
    """Hand messages recorded by a committed transaction to the senders."""
    if not message_ids:
        return
    loyalty.tasks.send_messages(message_ids)
    with transaction(loyalty.sessions) as session:
        session.execute(update(Message).where(Message.id.in_(message_ids))
                        .values(enqueued_at=loyalty.clock()))


@dataclass(frozen=True)
class _Due:
    """A message that is due, as its plan needs it."""

    id: int
    kind: MessageKind
    text: str
    fields: dict[str, str] | None
    contacts: Contacts
    refused: frozenset[Channel]


def _due(loyalty: Loyalty, message_id: int, now: datetime) -> _Due | None:
    with loyalty.sessions() as session:
        message = session.get(Message, message_id)
        if message is None or message.status not in SENDABLE_STATUSES or \
                (message.not_before is not None and message.not_before > now):
            return None
        customer = session.get_one(Customer, message.customer_id)
        refused = session.scalars(select(MessageAttempt.channel).where(
            MessageAttempt.message_id == message_id,
            MessageAttempt.outcome == AttemptOutcome.REFUSED))
        return _Due(message.id, MessageKind(message.kind), message.text, message.fields,
                    Contacts(customer.zalo_user_id, customer.phone),
                    frozenset(Channel(channel) for channel in refused))


def _plan(loyalty: Loyalty, due: _Due) -> tuple[Channel, ...]:
    plan = loyalty.plan(due.kind)
    # A message recorded without fields (before the channel plan) has no template data.
    return plan if due.fields is not None else tuple(c for c in plan if c not in TEMPLATED)


def _window(sender: Sender, user_id: str | None, now: datetime) -> Callable[[], Window]:
    """The member's consultation window, asked of Zalo at most once per send."""
    @cache
    def read() -> Window:
        if user_id is None:
            return Window.CLOSED
        try:
            return window_at(sender.last_interaction(user_id), now)
        except ZaloError as error:  # the plan goes on without the consultation message
            log.info("consultation window unknown", extra={"error": str(error)})
            return Window.UNKNOWN
    return read


def _outgoing(program: Program, due: _Due, channel: Channel) -> Outgoing:
    to = recipient(channel, due.contacts)
    assert to is not None, "next_channel chooses only channels that reach the member"
    if channel not in TEMPLATED:
        return Outgoing(due.id, channel, to, due.text)
    setup = program.channels.of(due.kind)
    return Outgoing(due.id, channel, to, due.text, setup.template_id,
                    template_data(due.fields or {}, setup.template_params))


def _start(session: Session, message: Message, outgoing: Outgoing, now: datetime) -> int:
    """Record the call about to be made; returns the attempt's id."""
    message.channel = outgoing.channel
    message.recipient = outgoing.recipient
    message.attempts += 1
    message.updated_at = now
    attempt = MessageAttempt(message_id=message.id, channel=outgoing.channel,
                             attempted_at=now, outcome=AttemptOutcome.STARTED)
    session.add(attempt)
    session.flush()
    return attempt.id


def _locked(session: Session, message_id: int) -> Message:
    return session.scalars(select(Message).where(Message.id == message_id)
                           .with_for_update()).one()


def _claim(loyalty: Loyalty, outgoing: Outgoing, now: datetime) -> tuple[int, int] | None:
    """Move a due message to ``sending`` with its first attempt; returns (attempt id,
    attempt number), or None when another worker got there first."""
    with transaction(loyalty.sessions) as session:
        message = _locked(session, outgoing.message_id)
        if message.status not in SENDABLE_STATUSES or \
                (message.not_before is not None and message.not_before > now):
            return None
        message.status = MessageStatus.SENDING
        return _start(session, message, outgoing, now), message.attempts


def _settle_unsent(loyalty: Loyalty, message_id: int, now: datetime,
                   **changes: object) -> bool:
    """Change a message that is due without trying any channel (held for the night,
    skipped); False when another worker claimed it meanwhile."""
    with transaction(loyalty.sessions) as session:
        message = _locked(session, message_id)
        if message.status not in SENDABLE_STATUSES:
            return False
        for name, value in changes.items():
            setattr(message, name, value)
        message.updated_at = now
        return True


def _move_on(loyalty: Loyalty, attempt_id: int, error: ZaloError,
             outgoing: Outgoing | None) -> int | None:
    """The channel refused the member for good: record it and, without leaving
    ``sending``, start the next channel's attempt (its id is returned). With no next
    channel the message has failed."""
    now = loyalty.clock()
    with transaction(loyalty.sessions) as session:
        attempt = session.get_one(MessageAttempt, attempt_id)
        attempt.outcome = AttemptOutcome.REFUSED
        attempt.error_code, attempt.error = error.code, str(error)
        message = _locked(session, attempt.message_id)
        message.error_code, message.error = error.code, str(error)
        message.updated_at = now
        # The relay may have declared a very slow send unknown: never start another channel
        # for a message this worker no longer holds.
        if message.status != MessageStatus.SENDING:
            return None
        if outgoing is None:
            message.status = MessageStatus.FAILED
            return None
        return _start(session, message, outgoing, now)


def _finish(loyalty: Loyalty, attempt_id: int, outcome: AttemptOutcome,
            on_sent: Mapping[MessageKind, OnSent], error: ZaloError | None = None,
            **changes: object) -> None:
    with transaction(loyalty.sessions) as session:
        attempt = session.get_one(MessageAttempt, attempt_id)
        attempt.outcome = outcome
        if error is not None:
            attempt.error_code, attempt.error = error.code, str(error)
            changes |= {"error_code": error.code, "error": str(error)}
        message = session.get_one(Message, attempt.message_id)
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
    """Try the message's plan, channel after channel, until one carries it, one asks to
    wait, or none is left."""
    on_sent = on_sent or {}
    now = loyalty.clock()
    due = _due(loyalty, message_id, now)
    if due is None:
        return NOT_DUE
    program, zone = loyalty.program, loyalty.zone
    caps, plan = program.channels, _plan(loyalty, due)
    # Zalo's ban; the log, standing in for Zalo without credentials, is written at any hour.
    if caps.of(due.kind).promotional and plan != (Channel.LOG,) and \
            in_night_ban(now, zone, caps.night_starts, caps.night_ends):
        held = _settle_unsent(loyalty, message_id, now, status=MessageStatus.HELD,
                              not_before=next_morning(now, zone),
                              error="promotional messages wait for the morning")
        return SendResult(MessageStatus.HELD) if held else NOT_DUE
    refused = set(due.refused)
    window = _window(sender, due.contacts.zalo_user_id, now)
    channel = next_channel(plan, refused=refused, contacts=due.contacts, window=window)
    if channel is None:
        # Refused by a channel on an earlier try, the message has failed; never tried, it
        # is skipped.
        status = MessageStatus.FAILED if refused else MessageStatus.SKIPPED
        settled = _settle_unsent(loyalty, message_id, now, status=status,
                                 skip_reason=None if refused else SkipReason.NO_CHANNEL,
                                 error="no channel of the plan can reach this member now")
        return SendResult(status) if settled else NOT_DUE
    outgoing = _outgoing(program, due, channel)
    claimed = _claim(loyalty, outgoing, now)
    if claimed is None:
        return NOT_DUE
    attempt_id, attempts = claimed
    while True:
        try:
            provider_id = sender.send(outgoing)
        except ZaloRetryable as error:
            delay = error.retry_after or retry_delay(attempts)
            _finish(loyalty, attempt_id, AttemptOutcome.RETRY, on_sent, error,
                    status=MessageStatus.PENDING, not_before=now + timedelta(seconds=delay))
            return SendResult(MessageStatus.PENDING, retry_in=delay)
        except (ZaloNightBan, ZaloQuotaExceeded, ZaloTokenError) as error:
            if isinstance(error, ZaloNightBan):
                until = next_morning(now, zone)
            elif isinstance(error, ZaloQuotaExceeded):
                until = next_quota_day(now, zone)
            else:
                until = now + TOKEN_TROUBLE_PAUSE
            _finish(loyalty, attempt_id, AttemptOutcome.HELD, on_sent, error,
                    status=MessageStatus.HELD, not_before=until)
            return SendResult(MessageStatus.HELD)
        except ZaloError as error:  # final for this member on this channel: -230, -213 …
            refused.add(outgoing.channel)
            channel = next_channel(plan, refused=refused, contacts=due.contacts,
                                   window=window)
            outgoing = _outgoing(program, due, channel) if channel is not None else None
            next_attempt = _move_on(loyalty, attempt_id, error, outgoing)
            if next_attempt is None or outgoing is None:
                log.warning("message failed for good", extra={
                    "message_id": message_id, "error": str(error)})
                return SendResult(MessageStatus.FAILED)
            attempt_id, attempts = next_attempt, attempts + 1
            continue
        _finish(loyalty, attempt_id, AttemptOutcome.SENT, on_sent, status=MessageStatus.SENT,
                sent_at=loyalty.clock(), provider_message_id=provider_id, error_code=None,
                error=None, not_before=None)
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
