"""The cross-sell campaign (seed 001, Chiến dịch 1-4): SPEC §2 rows "near the next tier"
(the scan's selection, see ``tiers.near_tier_ranges``), "cross-sell tag", "cross-sell bonus"
and "daily scan"; SPEC §5 "the nudge text"; SPEC §4 "the member's page" (the live offer).
No I/O."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from loyalty.domain.tiers import next_tier, points_to_next_tier, tier_for_points
from loyalty.program import Program


def campaign_day(as_of: datetime, zone: ZoneInfo) -> date:
    """The shop's local day a scan belongs to: one nudge per member per day, at most."""
    return as_of.astimezone(zone).date()


def tag_expires_at(program: Program, sent_at: datetime) -> datetime:
    """``Đã gửi tin`` is set when the nudge is sent and cleared ``tag_days`` later."""
    return sent_at + timedelta(days=program.crosssell.tag_days)


def tag_period_start(program: Program, as_of: datetime) -> datetime:
    """Nudges created after this are within one tag period of ``as_of``."""
    return as_of - timedelta(days=program.crosssell.tag_days)


def bonus_deadline(program: Program, sent_at: datetime) -> datetime:
    return sent_at + timedelta(hours=program.crosssell.bonus_window_hours)


def bonus_window_for_order(program: Program, placed_at: datetime) -> tuple[datetime, datetime]:
    """The send times ``[earliest, latest]`` of a nudge whose bonus an order placed at
    ``placed_at`` earns: the bounds storage looks nudges up by."""
    return placed_at - timedelta(hours=program.crosssell.bonus_window_hours), placed_at


def earns_bonus(program: Program, nudge_sent_at: datetime, order_placed_at: datetime) -> bool:
    """An order placed within ``bonus_window_hours`` after the nudge was sent earns the bonus."""
    earliest, latest = bonus_window_for_order(program, order_placed_at)
    return earliest <= nudge_sent_at <= latest


def nudge_paying_bonus(program: Program, sent_nudges: Iterable[tuple[int, datetime]],
                       paid: Collection[int], order_placed_at: datetime) -> int | None:
    """The nudge whose bonus an order earns: the latest one sent whose window holds the
    order and that has paid no bonus yet (one bonus per nudge)."""
    eligible = [(sent_at, nudge) for nudge, sent_at in sent_nudges
                if nudge not in paid and earns_bonus(program, sent_at, order_placed_at)]
    return max(eligible)[1] if eligible else None


@dataclass(frozen=True)
class BonusOffer:
    """The bonus a member still earns by ordering before ``order_before``."""

    bonus_points: int
    order_before: datetime


def bonus_offer(program: Program, nudge_sent_at: datetime) -> BonusOffer:
    """The offer of a sent nudge whose bonus an order placed now would earn (storage finds
    that nudge with ``bonus_window_for_order(program, now)``)."""
    return BonusOffer(program.crosssell.bonus_points, bonus_deadline(program, nudge_sent_at))


def nudge_fields(program: Program, *, points: int, name: str | None, deadline: datetime,
                 zone: ZoneInfo) -> dict[str, str]:
    """The member's numbers in a nudge: its text's placeholders and its template's data."""
    upper = next_tier(program, tier_for_points(program, points))
    assert upper is not None, "the top tier is never nudged"
    return {"points": str(points),
            "points_to_next_tier": str(points_to_next_tier(program, points)),
            "next_tier_name": upper.name_vi,
            "bonus_points": str(program.crosssell.bonus_points),
            "bonus_deadline": deadline.astimezone(zone).strftime("%H:%M %d/%m/%Y"),
            "name": name or "bạn"}


def nudge_text(program: Program, *, points: int, name: str | None, deadline: datetime,
               zone: ZoneInfo) -> str:
    return program.messages.nudge.format(**nudge_fields(
        program, points=points, name=name, deadline=deadline, zone=zone))


def bonus_reversal_fields(*, order_id: str, bonus_points: int, points: int,
                          name: str | None) -> dict[str, str]:
    return {"order_id": order_id, "bonus_points": str(bonus_points), "points": str(points),
            "name": name or "bạn"}
