"""The cross-sell campaign's results (SPEC §4 "Campaign results"): what each group did after
a scan, the uplift of the nudged over the held out, and when a run's figures are final.
No I/O: storage counts, this module compares.

Definitions (storage turns them into SQL, ``services.campaign_results``):
- a member's windows start at the scan that selected them, for both groups: the nudges go
  out within minutes of it, and one start for both keeps the comparison fair (an order
  placed before a nudge arrived counts in both groups alike). The comparison is by the
  group a member was put in, whatever became of the message (a failed nudge stays nudged);
- *converted*: an order placed within ``bonus_window_hours`` (72 h) of the window's start
  that earned, was not reversed, and of which the member kept some spend
  (``orders.spend > 0``): a partly refunded order counts with what the member kept, a fully
  refunded one does not;
- *reached the next tier*: a tier change within 72 h, or within the tag period, to at
  least the points of the tier above the one the member held when selected, by an order
  that was not cancelled or returned since.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from loyalty.domain.holdout import Group
from loyalty.domain.proportions import newcombe_interval
from loyalty.program import Program

# Shown even when zero: the statuses a marketer reads first.
MESSAGE_STATUSES_SHOWN = ("sent", "failed", "unknown")
DECIMALS = 4


@dataclass(frozen=True)
class GroupOutcome:
    """What one group of selected members did; ``members`` counts assignments, so a member
    selected in two runs counts in each."""

    members: int = 0
    converted: int = 0
    spend: int = 0
    reached_next_tier_72h: int = 0
    reached_next_tier_in_period: int = 0
    bonus_credited: int = 0
    bonus_reversed: int = 0
    messages: Mapping[str, int] = field(default_factory=dict)

    def __add__(self, other: GroupOutcome) -> GroupOutcome:
        return GroupOutcome(
            self.members + other.members, self.converted + other.converted,
            self.spend + other.spend, self.reached_next_tier_72h + other.reached_next_tier_72h,
            self.reached_next_tier_in_period + other.reached_next_tier_in_period,
            self.bonus_credited + other.bonus_credited,
            self.bonus_reversed + other.bonus_reversed,
            dict(Counter(self.messages) + Counter(other.messages)))

    def to_json(self, group: Group) -> dict[str, Any]:
        messages = dict(self.messages)
        if group is Group.NUDGED:
            messages = dict.fromkeys(MESSAGE_STATUSES_SHOWN, 0) | messages
        return {"members": self.members, "converted": self.converted, "spend": self.spend,
                "reached_next_tier_72h": self.reached_next_tier_72h,
                "reached_next_tier_in_period": self.reached_next_tier_in_period,
                "bonus_credited": self.bonus_credited, "bonus_reversed": self.bonus_reversed,
                "messages": messages}


@dataclass(frozen=True)
class Uplift:
    """Conversion of the nudged minus that of the held out, with its 95 % interval, and the
    spend per nudged member minus the spend per held-out member (VND). None while either
    group is empty."""

    conversion: float | None = None
    ci95: tuple[float, float] | None = None
    extra_spend_per_nudged: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"conversion": None if self.conversion is None
                else round(self.conversion, DECIMALS),
                "ci95": None if self.ci95 is None
                else [round(bound, DECIMALS) for bound in self.ci95],
                "extra_spend_per_nudged": self.extra_spend_per_nudged}


def spend_per_member(outcome: GroupOutcome) -> Decimal:
    return Decimal(outcome.spend) / Decimal(outcome.members)


def uplift(nudged: GroupOutcome, held_out: GroupOutcome) -> Uplift:
    if not nudged.members or not held_out.members:
        return Uplift()
    difference = nudged.converted / nudged.members - held_out.converted / held_out.members
    extra = spend_per_member(nudged) - spend_per_member(held_out)
    return Uplift(difference,
                  newcombe_interval(nudged.converted, nudged.members,
                                    held_out.converted, held_out.members),
                  int(extra.to_integral_value(rounding=ROUND_HALF_UP)))


def windows_end(program: Program, scan_at: datetime) -> tuple[datetime, datetime]:
    """When the windows of a member selected at ``scan_at`` close: the 72 hours (after
    which no new order converts them) and the tag period (the "in period" tier figure)."""
    return (scan_at + timedelta(hours=program.crosssell.bonus_window_hours),
            scan_at + timedelta(days=program.crosssell.tag_days))


@dataclass(frozen=True)
class RunResult:
    """One campaign day."""

    day: date
    nudged: GroupOutcome
    held_out: GroupOutcome
    window_closed: bool
    period_closed: bool

    @property
    def uplift(self) -> Uplift:
        return uplift(self.nudged, self.held_out)

    def to_json(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(),
                "selected": self.nudged.members + self.held_out.members,
                "nudged": self.nudged.members, "held_out": self.held_out.members,
                "window_closed": self.window_closed, "period_closed": self.period_closed,
                "groups": {Group.NUDGED.value: self.nudged.to_json(Group.NUDGED),
                           Group.HELD_OUT.value: self.held_out.to_json(Group.HELD_OUT)},
                "uplift": self.uplift.to_json()}


@dataclass(frozen=True)
class CampaignResults:
    start: date
    end: date
    runs: tuple[RunResult, ...]

    @property
    def nudged(self) -> GroupOutcome:
        return sum((run.nudged for run in self.runs), GroupOutcome())

    @property
    def held_out(self) -> GroupOutcome:
        return sum((run.held_out for run in self.runs), GroupOutcome())

    @property
    def uplift(self) -> Uplift:
        return uplift(self.nudged, self.held_out)

    def to_json(self) -> dict[str, Any]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(),
                "groups": {Group.NUDGED.value: self.nudged.to_json(Group.NUDGED),
                           Group.HELD_OUT.value: self.held_out.to_json(Group.HELD_OUT)},
                "uplift": self.uplift.to_json(),
                "runs": [run.to_json() for run in self.runs]}
