"""The cross-sell campaign's rules (seed 001, SPEC §2), with no I/O."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from loyalty.domain.tiers import next_tier, points_to_next_tier, tier_for_points
from loyalty.program import Program


def campaign_day(as_of: datetime, zone: ZoneInfo) -> date:
    """The shop's local day a scan belongs to: one nudge per member per day, at most."""
    return as_of.astimezone(zone).date()


def tag_expires_at(program: Program, sent_at: datetime) -> datetime:
    return sent_at + timedelta(days=program.crosssell.tag_days)


def bonus_deadline(program: Program, sent_at: datetime) -> datetime:
    return sent_at + timedelta(hours=program.crosssell.bonus_window_hours)


def earns_bonus(program: Program, nudge_sent_at: datetime, order_placed_at: datetime) -> bool:
    """An order placed within the window after the nudge was sent earns the bonus."""
    return nudge_sent_at <= order_placed_at <= bonus_deadline(program, nudge_sent_at)


def nudge_text(program: Program, *, points: int, name: str | None, deadline: datetime,
               zone: ZoneInfo) -> str:
    upper = next_tier(program, tier_for_points(program, points))
    assert upper is not None, "the top tier is never nudged"
    return program.messages.nudge.format(
        points=points, points_to_next_tier=points_to_next_tier(program, points),
        next_tier_name=upper.name_vi, bonus_points=program.crosssell.bonus_points,
        bonus_deadline=deadline.astimezone(zone).strftime("%H:%M %d/%m/%Y"),
        name=name or "bạn")


def bonus_reversal_text(program: Program, *, order_id: str, bonus_points: int, points: int,
                        name: str | None) -> str:
    return program.messages.bonus_reversal.format(
        order_id=order_id, bonus_points=bonus_points, points=points, name=name or "bạn")


def next_morning(now: datetime, zone: ZoneInfo, morning: time = time(8, 0)) -> datetime:
    """When a message held by Zalo's night-time ban (22:00–06:00) may be tried again."""
    local = now.astimezone(zone)
    candidate = datetime.combine(local.date(), morning, zone)
    return candidate if candidate > local else candidate + timedelta(days=1)
