"""The channel plan of a message and Zalo's caps: SPEC §5 "channel plan" (Zalo's rules since
2026). No I/O.

A message goes out through its kind's plan, an ordered list of channels (default: the OA
consultation message when the member's window makes it free, else the OA template by user
id, else ZNS by phone when the shop enabled it). The first channel that can carry it now is
tried; one that refuses the member for good moves the message to the next; a transient
error tries the same channel again later. Without Zalo credentials the plan is the log.

Promotional messages also obey Zalo's caps, checked before a message is created (a member
over a cap is skipped and counted, never sent and failed) and, for the night, before it is
sent: at most ``promotional_per_month`` a member a month, only to members in contact with
the shop within ``contact_months``, none during the night ban.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from loyalty.domain.messages import Channel, MessageKind
from loyalty.program import MessageChannels, Program


class Window(StrEnum):
    """What the member's last interaction with the OA allows a consultation message."""

    FREE = "free"  # within 48 h: accepted and free
    PAID = "paid"  # 48 h to 7 days: accepted, but billed
    CLOSED = "closed"  # after 7 days, or never: refused (-230)
    UNKNOWN = "unknown"  # the quota call failed or its answer was not understood


FREE_WINDOW = timedelta(hours=48)
CONSULTATION_WINDOW = timedelta(days=7)


def window_at(last_interaction: datetime | None, now: datetime) -> Window:
    """The window at ``now`` of a member whose last interaction was ``last_interaction``
    (None: never). A time slightly ahead of our clock counts as just now."""
    if last_interaction is None:
        return Window.CLOSED
    age = now - last_interaction
    if age < FREE_WINDOW:
        return Window.FREE
    return Window.PAID if age < CONSULTATION_WINDOW else Window.CLOSED


class SkipReason(StrEnum):
    """Why a message was never tried: it is skipped and counted, not failed."""

    MONTHLY_CAP = "monthly_cap"
    NO_RECENT_CONTACT = "no_recent_contact"
    NO_CHANNEL = "no_channel"


@dataclass(frozen=True)
class Contacts:
    zalo_user_id: str | None
    phone: str | None


# Channels that send the program's template (id and parameters) rather than the text.
TEMPLATED = (Channel.TEMPLATE, Channel.ZNS)


def recipient(channel: Channel, contacts: Contacts) -> str | None:
    """Whom ``channel`` addresses: the OA user id, or the phone for ZNS. The log stands in
    for every Zalo channel, so it takes whichever the member has."""
    if channel is Channel.ZNS:
        return contacts.phone
    if channel is Channel.LOG:
        return contacts.zalo_user_id or contacts.phone
    return contacts.zalo_user_id


def plan_for(program: Program, kind: MessageKind, *, to_zalo: bool) -> tuple[Channel, ...]:
    """The channels a message of ``kind`` may go through: the program's plan less the
    channels the shop has not set up (a template channel without a template id, ZNS not
    enabled), or the log alone when there are no Zalo credentials."""
    if not to_zalo:
        return (Channel.LOG,)
    setup = program.channels.of(kind)
    return tuple(channel for channel in setup.plan
                 if channel not in TEMPLATED or (
                     setup.template_id and
                     (channel is Channel.TEMPLATE or program.channels.zns_enabled)))


def next_channel(plan: Sequence[Channel], *, refused: Collection[Channel], contacts: Contacts,
                 window: Callable[[], Window]) -> Channel | None:
    """The first channel of ``plan`` that can carry the message now, or None.

    A channel that already refused this member for good is passed over. The consultation
    message is taken only when the window is known to be free: ``window`` (which asks
    Zalo) is called only when the plan gets that far with a member who has an OA user id.
    """
    for channel in plan:
        if channel in refused or recipient(channel, contacts) is None:
            continue
        if channel is Channel.CONSULTATION and window() is not Window.FREE:
            continue
        return channel
    return None


def template_data(fields: Mapping[str, str], params: Mapping[str, str]) -> dict[str, str]:
    """The template's parameters (``params``: our field → the template's parameter name)
    filled with the message's fields, the same values as its text."""
    return {param: fields[field] for field, param in params.items()}


def months_before(moment: datetime, months: int) -> datetime:
    """The same wall-clock time ``months`` calendar months earlier (the 31st becomes the
    last day of a shorter month)."""
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    first_of_next = date(year + (month + 1) // 12, (month + 1) % 12 + 1, 1)
    last_day = (first_of_next - timedelta(days=1)).day
    return moment.replace(year=year, month=month + 1, day=min(moment.day, last_day))


def calendar_month(now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """``[start, end)`` of the shop's calendar month that holds ``now``."""
    local = now.astimezone(zone)
    start = datetime.combine(local.date().replace(day=1), time(0), zone)
    after = months_before(start, -1)
    return start, after


def cap_reason(setup: MessageChannels, program: Program, *, promotional_this_month: int,
               last_contact: datetime | None, now: datetime) -> SkipReason | None:
    """Why a message of this kind may not be created for the member now, if it may not.

    Only promotional messages are capped. ``promotional_this_month``: the member's
    promotional messages queued or sent in this calendar month; ``last_contact``: the
    member's latest order event (None: no order at all).
    """
    if not setup.promotional:
        return None
    caps = program.channels
    if promotional_this_month >= caps.promotional_per_month:
        return SkipReason.MONTHLY_CAP
    if last_contact is None or last_contact < months_before(now, caps.contact_months):
        return SkipReason.NO_RECENT_CONTACT
    return None


def in_night_ban(now: datetime, zone: ZoneInfo, starts: time, ends: time) -> bool:
    """Whether ``now`` falls in the night ban ``[starts, ends)`` local time (it may span
    midnight; equal times: no ban)."""
    if starts == ends:
        return False
    local = now.astimezone(zone).time()
    if starts < ends:
        return starts <= local < ends
    return local >= starts or local < ends
