"""Birthday gifts (SPEC §2), with no I/O."""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta

from loyalty.program import Program, Tier


def birthday_in_year(birthday: date, year: int) -> date:
    """29 February is celebrated on 28 February in other years."""
    if birthday.month == 2 and birthday.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return birthday.replace(year=year)


def is_birthday(birthday: date, day: date) -> bool:
    return birthday_in_year(birthday, day.year) == day


def may_receive_gift(program: Program, last_gift_at: datetime | None, now: datetime) -> bool:
    """At most one gift in any 365 days, even if the birthday is edited."""
    window = timedelta(days=program.birthdays.min_days_between_gifts)
    return last_gift_at is None or now - last_gift_at >= window


def birthday_text(program: Program, tier: Tier, name: str | None) -> str:
    return program.messages.birthday.format(name=name or "bạn", tier_name=tier.name_vi,
                                            gift=tier.birthday_gift)
