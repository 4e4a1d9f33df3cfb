"""Birthday gifts: SPEC §2 row "birthday gift". No I/O."""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta

from loyalty.program import Program, Tier


def birthdays_celebrated_on(day: date) -> list[tuple[int, int]]:
    """The (month, day) birthdays celebrated on ``day``: the bounds storage selects by.

    29 February is celebrated on 28 February in other years.
    """
    celebrated = [(day.month, day.day)]
    if (day.month, day.day) == (2, 28) and not calendar.isleap(day.year):
        celebrated.append((2, 29))
    return celebrated


def is_birthday(birthday: date, day: date) -> bool:
    return (birthday.month, birthday.day) in birthdays_celebrated_on(day)


def gift_window_start(program: Program, now: datetime) -> datetime:
    """At most one gift in any 365 days, even if the birthday is edited: a gift after this
    time means no gift now."""
    return now - timedelta(days=program.birthdays.min_days_between_gifts)


def may_receive_gift(program: Program, last_gift_at: datetime | None, now: datetime) -> bool:
    return last_gift_at is None or last_gift_at <= gift_window_start(program, now)


def birthday_fields(tier: Tier, name: str | None) -> dict[str, str]:
    """A gift message's text placeholders and template data."""
    return {"name": name or "bạn", "tier_name": tier.name_vi, "gift": tier.birthday_gift}
