"""Messages to members and the outbox's vocabulary: SPEC §5 (channels, night-time bans,
retries). No I/O. Which channel carries a message is ``channels``.

A message is recorded before it is tried and its result after:
``pending → sending → sent | failed``; ``held`` waits for ``not_before`` (night ban,
quota); ``skipped``: no channel could carry it (or a cap forbade it), so it was never tried;
``unknown``: a worker died mid-send, so whether Zalo got it is not known. It is reported,
never sent again blindly. Every call to a channel is an attempt, recorded with its outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
    SKIPPED = "skipped"
    UNKNOWN = "unknown"


# Statuses from which a message may still reach the member (or may have: unknown).
OPEN_STATUSES = (MessageStatus.PENDING, MessageStatus.SENDING, MessageStatus.HELD,
                 MessageStatus.UNKNOWN)
# Statuses of messages that certainly never reached the member.
NOT_DELIVERED = (MessageStatus.FAILED, MessageStatus.SKIPPED)
# Statuses a send task may pick a message up from.
SENDABLE_STATUSES = (MessageStatus.PENDING, MessageStatus.HELD)


class Channel(StrEnum):
    CONSULTATION = "cs"  # OA consultation message to the Zalo user id
    TEMPLATE = "template"  # OA template message to the Zalo user id
    ZNS = "zns"  # ZNS template message to the phone number
    LOG = "log"  # no Zalo credentials: written to the log, kept in the outbox


class AttemptOutcome(StrEnum):
    """What one call to one channel came to. ``started`` is written before the call, so an
    attempt still ``started`` is one whose worker died waiting for Zalo."""

    STARTED = "started"
    SENT = "sent"
    REFUSED = "refused"  # final for this member on this channel: the plan moves on
    RETRY = "retry"  # transient: the same channel again later
    HELD = "held"  # night ban, quota or token trouble: the same channel in the morning


@dataclass(frozen=True)
class Outgoing:
    """A message on its way to a sender: the text for the consultation message and the log,
    the template and its data for the template channels."""

    message_id: int
    channel: Channel
    recipient: str
    text: str
    template_id: str = ""
    template_data: Mapping[str, str] = field(default_factory=dict)


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
