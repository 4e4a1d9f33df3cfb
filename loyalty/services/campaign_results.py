"""The cross-sell campaign's results (SPEC §4 "Campaign results"), counted from the source of
truth: the holdout's assignments, orders, tier changes, the ledger and the outbox.

Each figure is one aggregate query grouped by (campaign day, group), so the work stays in
the database whatever the number of members; Python only puts the rows of the few groups
together and leaves the comparison to ``domain.campaign_results``, where the definitions
are. Every member's windows were fixed when the scan selected them
(``crosssell_assignments.window_ends_at`` / ``period_ends_at``), so no query needs the
outbox to know when a window starts.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, distinct, func, literal_column, null, or_, select
from sqlalchemy.orm import Session

from loyalty.domain.campaign_results import (
    CampaignResults,
    GroupOutcome,
    RunResult,
    windows_end,
)
from loyalty.domain.holdout import Group
from loyalty.domain.messages import MessageKind
from loyalty.domain.points import LedgerKind
from loyalty.program import Program
from loyalty.storage.db import transaction
from loyalty.storage.tables import (
    CampaignRun,
    CrosssellAssignment,
    LedgerEntry,
    Message,
    Order,
    TierChange,
)

if TYPE_CHECKING:
    from loyalty.bootstrap import Loyalty

CAMPAIGN = "crosssell"
# The range a report covers when none is given: the last 30 campaign days.
DEFAULT_DAYS = 30

A = CrosssellAssignment
Key = tuple[date, bool]  # (campaign day, held out)


class BadRange(ValueError):
    """A report range that ends before it starts."""


def default_range(today: date, start: date | None, end: date | None) -> tuple[date, date]:
    end = end or today
    return start or end - timedelta(days=DEFAULT_DAYS - 1), end


def _days(start: date, end: date) -> Any:
    return A.period.between(start, end)


def _figure(name: str) -> Any:
    return literal_column(f"'{name}'").label("figure")


def _members(days: Any) -> Any:
    """Per (day, group): members, and when their windows end."""
    return select(_figure("members"), A.period, A.held_out, null(), func.count(),
                  func.max(A.window_ends_at), func.max(A.period_ends_at),
                  ).where(days).group_by(A.period, A.held_out)


def _nudges(start: date, end: date) -> Any:
    """Per (day, status): the nudges of the day, all of the nudged group (the held out get
    none: the scan records no message for them)."""
    return select(_figure("nudges"), Message.period, literal_column("0"), Message.status,
                  func.count(), null(), null(),
                  ).where(Message.kind == MessageKind.NUDGE,
                          Message.period.between(start, end),
                          ).group_by(Message.period, Message.status)


def _conversions(days: Any, earliest: datetime) -> Any:
    """Per (day, group): members with an earning, kept order placed in their window, and the
    spend of those orders."""
    per_member = select(
        A.period, A.held_out, func.sum(Order.spend).label("spend"),
    ).select_from(A).join(Order, and_(
        Order.customer_id == A.customer_id, Order.placed_at >= A.assigned_at,
        Order.placed_at <= A.window_ends_at,
    )).where(days, Order.placed_at >= earliest, Order.earned.is_(True),
             Order.reversed.is_(False), Order.spend > 0,
             ).group_by(A.period, A.held_out, A.customer_id).subquery("converted")
    return select(_figure("converted"), per_member.c.period, per_member.c.held_out, null(),
                  func.count().label("a"), func.sum(per_member.c.spend), null(),
                  ).group_by(per_member.c.period, per_member.c.held_out)


def _tiers_reached(days: Any, earliest: datetime) -> Any:
    """Per (day, group): members who reached the next tier within 72 h, and in the period."""
    changed = TierChange.changed_at
    return select(
        _figure("tiers"), A.period, A.held_out, null(),
        func.count(distinct(case((changed <= A.window_ends_at, A.customer_id)))),
        func.count(distinct(case((changed <= A.period_ends_at, A.customer_id)))),
        null(),
    ).select_from(A).join(TierChange, and_(
        TierChange.customer_id == A.customer_id, changed >= A.assigned_at,
        or_(changed <= A.window_ends_at, changed <= A.period_ends_at),
        TierChange.points >= A.next_threshold,
    )).join(LedgerEntry, LedgerEntry.id == TierChange.ledger_entry_id).outerjoin(
        Order, Order.order_id == LedgerEntry.order_id,
    ).where(
        days, changed >= earliest,
        # An order cancelled or returned later took the tier back: it does not count.
        or_(Order.order_id.is_(None), Order.reversed.is_(False)),
    ).group_by(A.period, A.held_out)


def _bonuses(start: date, end: date) -> Any:
    """Per day: bonus points credited and taken back (as a positive number), all of the
    nudged group (a bonus names its nudge)."""
    kind, points = LedgerEntry.kind, LedgerEntry.points
    return select(
        _figure("bonuses"), Message.period, literal_column("0"), null(),
        func.sum(case((kind == LedgerKind.CROSSSELL_BONUS, points), else_=0)),
        -func.sum(case((kind == LedgerKind.CROSSSELL_BONUS_REVERSAL, points), else_=0)),
        null(),
    ).select_from(LedgerEntry).join(Message, Message.id == LedgerEntry.nudge_id).where(
        # Most ledger rows have no nudge: the index then skips them.
        LedgerEntry.nudge_id.is_not(None),
        kind.in_((LedgerKind.CROSSSELL_BONUS, LedgerKind.CROSSSELL_BONUS_REVERSAL)),
        Message.kind == MessageKind.NUDGE, Message.period.between(start, end),
    ).group_by(Message.period)


@dataclass
class _Tally:
    """The figures of one (day, group) as the statements above return them."""

    outcome: GroupOutcome = field(default_factory=GroupOutcome)
    window_ends_at: datetime | None = None
    period_ends_at: datetime | None = None


def _tallies(session: Session, start: date, end: date, zone: ZoneInfo) -> dict[Key, _Tally]:
    days = _days(start, end)
    # No window starts before the first day: a bound that keeps the orders and tier changes
    # of earlier years out of the joins.
    earliest = datetime.combine(start, time(0), zone)
    statements = (_members(days), _nudges(start, end), _conversions(days, earliest),
                  _tiers_reached(days, earliest), _bonuses(start, end))
    tallies: dict[Key, _Tally] = defaultdict(_Tally)
    for statement in statements:
        for figure, day, held_out, status, a, b, c in session.execute(statement):
            tally = tallies[(day, bool(held_out))]
            outcome = tally.outcome
            if figure == "members":
                tally.outcome = replace(outcome, members=int(a))
                tally.window_ends_at, tally.period_ends_at = b, c
            elif figure == "nudges":
                tally.outcome = replace(outcome, messages={**outcome.messages, status: int(a)})
            elif figure == "converted":
                tally.outcome = replace(outcome, converted=int(a), spend=int(b or 0))
            elif figure == "tiers":
                tally.outcome = replace(outcome, reached_next_tier_72h=int(a),
                                        reached_next_tier_in_period=int(b))
            else:
                tally.outcome = replace(outcome, bonus_credited=int(a or 0),
                                        bonus_reversed=int(b or 0))
    return tallies


def _scans(session: Session, start: date, end: date) -> dict[date, datetime]:
    """Campaign days with a scan (even one that selected nobody), and its latest time."""
    return {day: as_of for day, as_of in session.execute(
        select(CampaignRun.period, func.max(CampaignRun.as_of))
        .where(CampaignRun.campaign == CAMPAIGN, CampaignRun.dry_run.is_(False),
               CampaignRun.period.between(start, end))
        .group_by(CampaignRun.period))}


def read_results(session: Session, program: Program, start: date, end: date, now: datetime,
                 zone: ZoneInfo) -> CampaignResults:
    tallies = _tallies(session, start, end, zone)
    scans = _scans(session, start, end)
    runs = []
    for day in sorted(set(scans) | {day for day, _ in tallies}):
        nudged, held = tallies.get((day, False), _Tally()), tallies.get((day, True), _Tally())
        # A day whose scan selected nobody closes as if it had selected someone.
        nobody = windows_end(program, scans[day]) if day in scans else (now, now)
        window_end = max(t.window_ends_at or nobody[0] for t in (nudged, held))
        period_end = max(t.period_ends_at or nobody[1] for t in (nudged, held))
        runs.append(RunResult(day, nudged.outcome, held.outcome,
                              window_closed=now >= window_end,
                              period_closed=now >= period_end))
    return CampaignResults(start, end, tuple(runs))


def campaign_results(loyalty: Loyalty, start: date | None = None,
                     end: date | None = None) -> CampaignResults:
    """The results of the campaign days ``start`` to ``end`` (the last 30 by default)."""
    now = loyalty.clock()
    start, end = default_range(now.astimezone(loyalty.zone).date(), start, end)
    if start > end:
        raise BadRange(f"from ({start}) is after to ({end})")
    with transaction(loyalty.sessions) as session:
        return read_results(session, loyalty.program, start, end, now, loyalty.zone)


def _by_group(rows: Any) -> dict[str, int]:
    totals = dict.fromkeys((group.value for group in Group), 0)
    for held_out, count in rows:
        totals[(Group.HELD_OUT if held_out else Group.NUDGED).value] += int(count or 0)
    return totals


@dataclass(frozen=True)
class GroupCounts:
    """For /metrics: members ever selected by group, and of those selected ``since``, how
    many there are and how many converted."""

    selected: dict[str, int]
    recent: dict[str, int]
    recent_converted: dict[str, int]


def counts_by_group(session: Session, since: datetime) -> GroupCounts:
    selected = _by_group(session.execute(select(A.held_out, func.count())
                                         .group_by(A.held_out)))
    recent = A.assigned_at >= since
    in_window = _by_group(session.execute(select(A.held_out, func.count())
                                          .where(recent).group_by(A.held_out)))
    conversions = _conversions(recent, since).subquery()
    converted = _by_group(session.execute(
        select(conversions.c.held_out, func.sum(conversions.c.a))
        .group_by(conversions.c.held_out)))
    return GroupCounts(selected, in_window, converted)
