"""Messages to members and the outbox's vocabulary: SPEC §5 (channels, who can be reached,
night-time bans, retries). No I/O.

A message is recorded before it is tried and its result after:
``pending → sending → sent | failed``; ``held`` waits for ``not_before`` (night ban,
quota); ``unknown``: a worker died mid-send, so whether Zalo got it is not known. It is
reported, never sent again blindly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo


class MessageKind(StrEnum):
    NUDGE = "nudge"
    BONUS_REVERSAL = "bonus_reversal"
    BIRTHDAY = "birthday"


class MessageStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    HELD = "held"
    UNKNOWN = "unknown"


# Statuses from which a message may still reach the member (or may have: unknown).
OPEN_STATUSES = (MessageStatus.PENDING, MessageStatus.SENDING, MessageStatus.HELD,
                 MessageStatus.UNKNOWN)
# Statuses a send task may pick a message up from.
SENDABLE_STATUSES = (MessageStatus.PENDING, MessageStatus.HELD)


class Channel(StrEnum):
    CONSULTATION = "cs"  # OA consultation message to the Zalo user id
    TEMPLATE = "template"  # OA template message to the Zalo user id
    ZNS = "zns"  # ZNS template message to the phone number
    LOG = "log"  # no Zalo credentials: written to the log, kept in the outbox


class Contact(StrEnum):
    """The customer field a channel reaches them by."""

    ZALO_USER_ID = "zalo_user_id"
    PHONE = "phone"


def contact_for(channel: Channel) -> Contact:
    """Who can be reached on ``channel``: those with this field set."""
    return Contact.PHONE if channel is Channel.ZNS else Contact.ZALO_USER_ID


def recipient(channel: Channel, *, phone: str | None, zalo_user_id: str | None) -> str | None:
    return phone if contact_for(channel) is Contact.PHONE else zalo_user_id


@dataclass(frozen=True)
class Outgoing:
    """A message on its way to a sender."""

    message_id: int
    channel: Channel
    recipient: str
    text: str


def retry_delay(attempts: int) -> float:
    """Seconds before trying a transient send failure again: doubling, at most a minute."""
    return float(min(60, 2 ** attempts))


MORNING = time(8, 0)
# Quota is counted per day: try again just after midnight.
AFTER_MIDNIGHT = time(0, 5)


def next_morning(now: datetime, zone: ZoneInfo, morning: time = MORNING) -> datetime:
    """When a message held by Zalo's night-time ban (22:00–06:00) may be tried again."""
    local = now.astimezone(zone)
    candidate = datetime.combine(local.date(), morning, zone)
    return candidate if candidate > local else candidate + timedelta(days=1)


def next_quota_day(now: datetime, zone: ZoneInfo) -> datetime:
    """When a message refused for an exhausted daily quota may be tried again: the next
    day, just after midnight."""
    return next_morning(now, zone, AFTER_MIDNIGHT)
