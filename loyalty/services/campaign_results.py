"""The cross-sell campaign's results (SPEC §4 "Campaign results"), counted from the source of
truth: the holdout's assignments, orders, tier changes, the ledger and the outbox.

Each figure is one aggregate query grouped by (campaign day, group), so the work stays in
the database whatever the number of members; Python only puts the rows of the few groups
together and leaves the comparison to ``domain.campaign_results``. The definitions are in
that module's docstring.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    and_,
    case,
    distinct,
    func,
    literal_column,
    null,
    or_,
    select,
)
from sqlalchemy.orm import Session

from loyalty.domain.campaign_results import (
    CampaignResults,
    GroupOutcome,
    RunResult,
    period_closed,
    window_closed,
)
from loyalty.domain.holdout import Group
from loyalty.domain.messages import SENDABLE_STATUSES, MessageKind, MessageStatus
from loyalty.domain.points import LedgerKind
from loyalty.program import Program
from loyalty.storage.db import transaction
from loyalty.storage.intervals import shifted
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
# A nudge in one of these has not been sent yet, so its member's window has not started.
ON_THEIR_WAY = (*SENDABLE_STATUSES, MessageStatus.SENDING)

Key = tuple[date, bool]  # (campaign day, held out)


class BadRange(ValueError):
    """A report range that ends before it starts."""


def default_range(today: date, start: date | None, end: date | None) -> tuple[date, date]:
    end = end or today
    return start or end - timedelta(days=DEFAULT_DAYS - 1), end


def _assigned(start: date | None = None, end: date | None = None,
              since: datetime | None = None) -> Any:
    """One row per assignment (of the days ``start`` to ``end``, or made ``since``): its
    member, and when its window started (the nudge's send, or the scan for the held out and
    for a nudge not sent)."""
    a = CrosssellAssignment
    query = select(
        a.period, a.held_out, a.customer_id, a.next_threshold,
        func.coalesce(Message.sent_at, a.assigned_at).label("start"),
        Message.id.label("nudge_id"), Message.status.label("status"),
    ).select_from(a).outerjoin(Message, and_(
        Message.kind == MessageKind.NUDGE, Message.customer_id == a.customer_id,
        Message.period == a.period))
    if start is not None:
        query = query.where(a.period >= start)
    if end is not None:
        query = query.where(a.period <= end)
    if since is not None:
        query = query.where(a.assigned_at >= since)
    return query


@dataclass
class _Tally:
    """The figures of one (day, group) as the statements below return them."""

    outcome: GroupOutcome = field(default_factory=GroupOutcome)
    last_start: datetime | None = None
    on_their_way: int = 0


def _figure(name: str) -> Any:
    return literal_column(f"'{name}'").label("figure")


def _members_and_messages(s: Any) -> Any:
    """Per (day, group, nudge status): members, and the latest window start."""
    return select(_figure("members"), s.c.period, s.c.held_out, s.c.status,
                  func.count().label("a"), literal_column("0").label("b"),
                  func.max(s.c.start).label("last_start"),
                  ).group_by(s.c.period, s.c.held_out, s.c.status)


def _conversions(program: Program, s: Any, earliest: datetime) -> Any:
    """Per (day, group): members with an earning, kept order placed in their window, and the
    spend of those orders."""
    window = timedelta(hours=program.crosssell.bonus_window_hours)
    per_member = select(
        s.c.period, s.c.held_out, func.sum(Order.spend).label("spend"),
    ).select_from(s).join(Order, and_(
        Order.customer_id == s.c.customer_id, Order.placed_at >= s.c.start,
        Order.placed_at <= shifted(s.c.start, window),
    )).where(Order.placed_at >= earliest, Order.earned.is_(True), Order.reversed.is_(False),
             Order.spend > 0).group_by(
        s.c.period, s.c.held_out, s.c.customer_id).subquery("converted")
    return select(_figure("converted"), per_member.c.period, per_member.c.held_out, null(),
                  func.count().label("a"), func.sum(per_member.c.spend), null(),
                  ).group_by(per_member.c.period, per_member.c.held_out)


def _tiers_reached(program: Program, s: Any, earliest: datetime) -> Any:
    """Per (day, group): members who reached the next tier within 72 h, and in the period."""
    window = timedelta(hours=program.crosssell.bonus_window_hours)
    period = timedelta(days=program.crosssell.tag_days)
    changed = TierChange.changed_at
    return select(
        _figure("tiers"), s.c.period, s.c.held_out, null(),
        func.count(distinct(case((changed <= shifted(s.c.start, window), s.c.customer_id)))),
        func.count(distinct(case((changed <= shifted(s.c.start, period), s.c.customer_id)))),
        null(),
    ).select_from(s).join(TierChange, and_(
        TierChange.customer_id == s.c.customer_id, changed >= s.c.start,
        changed <= shifted(s.c.start, max(window, period)),
        TierChange.points >= s.c.next_threshold,
    )).join(LedgerEntry, LedgerEntry.id == TierChange.ledger_entry_id).outerjoin(
        Order, Order.order_id == LedgerEntry.order_id,
    # An order cancelled or returned later took the tier back: it does not count.
    ).where(changed >= earliest, or_(Order.order_id.is_(None), Order.reversed.is_(False)),
            ).group_by(s.c.period, s.c.held_out)


def _bonuses(s: Any) -> Any:
    """Per (day, group): bonus points credited and taken back (as a positive number)."""
    kind, points = LedgerEntry.kind, LedgerEntry.points
    return select(
        _figure("bonuses"), s.c.period, s.c.held_out, null(),
        func.sum(case((kind == LedgerKind.CROSSSELL_BONUS, points), else_=0)),
        -func.sum(case((kind == LedgerKind.CROSSSELL_BONUS_REVERSAL, points), else_=0)),
        null(),
    ).select_from(s).join(LedgerEntry, LedgerEntry.nudge_id == s.c.nudge_id).where(
        # Most ledger rows have no nudge: the index then skips them.
        LedgerEntry.nudge_id.is_not(None),
        kind.in_((LedgerKind.CROSSSELL_BONUS, LedgerKind.CROSSSELL_BONUS_REVERSAL)),
    ).group_by(s.c.period, s.c.held_out)


def _outcomes(program: Program, start: date, end: date, zone: ZoneInfo) -> list[Any]:
    """Every figure, as separate statements: each can then run in parallel inside
    PostgreSQL, which a CTE shared by all of them would prevent."""
    s = _assigned(start, end).subquery("assigned")
    # No window starts before the first day's scan: an indexed bound for orders and tier
    # changes, so that those of earlier years are not even looked at.
    earliest = datetime.combine(start, time(0), zone)
    return [_members_and_messages(s), _conversions(program, s, earliest),
            _tiers_reached(program, s, earliest), _bonuses(s)]


def _tallies(session: Session, program: Program, start: date, end: date,
             zone: ZoneInfo) -> dict[Key, _Tally]:
    tallies: dict[Key, _Tally] = defaultdict(_Tally)
    rows = (row for statement in _outcomes(program, start, end, zone)
            for row in session.execute(statement))
    for figure, day, held_out, status, a, b, last_start in rows:
        tally = tallies[(day, bool(held_out))]
        outcome = tally.outcome
        if figure == "members":
            messages = dict(outcome.messages) | ({status: int(a)} if status else {})
            tally.outcome = replace(outcome, members=outcome.members + int(a),
                                    messages=messages)
            tally.last_start = last_start if tally.last_start is None \
                else max(tally.last_start, last_start)
            tally.on_their_way += int(a) if status in ON_THEIR_WAY else 0
        elif figure == "converted":
            tally.outcome = replace(outcome, converted=int(a), spend=int(b or 0))
        elif figure == "tiers":
            tally.outcome = replace(outcome, reached_next_tier_72h=int(a),
                                    reached_next_tier_in_period=int(b))
        else:
            tally.outcome = replace(outcome, bonus_credited=int(a or 0),
                                    bonus_reversed=int(b or 0))
    return tallies


def _run_days(session: Session, start: date, end: date) -> dict[date, datetime]:
    """Campaign days with a scan (even one that selected nobody), and its latest time."""
    return {day: as_of for day, as_of in session.execute(
        select(CampaignRun.period, func.max(CampaignRun.as_of))
        .where(CampaignRun.campaign == CAMPAIGN, CampaignRun.dry_run.is_(False),
               CampaignRun.period.between(start, end))
        .group_by(CampaignRun.period))}


def read_results(session: Session, program: Program, start: date, end: date,
                 now: datetime, zone: ZoneInfo) -> CampaignResults:
    tallies = _tallies(session, program, start, end, zone)
    scans = _run_days(session, start, end)
    runs = []
    for day in sorted(set(scans) | {day for day, _ in tallies}):
        nudged, held = tallies.get((day, False), _Tally()), tallies.get((day, True), _Tally())
        starts = [moment for moment in (scans.get(day), nudged.last_start, held.last_start)
                  if moment is not None]
        last_start, waiting = max(starts), nudged.on_their_way + held.on_their_way
        runs.append(RunResult(day, nudged.outcome, held.outcome,
                              window_closed(program, last_start, waiting, now),
                              period_closed(program, last_start, waiting, now)))
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


def counts_by_group(session: Session, program: Program, since: datetime) -> GroupCounts:
    a = CrosssellAssignment
    selected = _by_group(session.execute(select(a.held_out, func.count())
                                         .group_by(a.held_out)))
    recent = _by_group(session.execute(select(a.held_out, func.count())
                                       .where(a.assigned_at >= since).group_by(a.held_out)))
    conversions = _conversions(program, _assigned(since=since).subquery("assigned"),
                               since).subquery()
    converted = _by_group(session.execute(
        select(conversions.c.held_out, func.sum(conversions.c.a))
        .group_by(conversions.c.held_out)))
    return GroupCounts(selected, recent, converted)
