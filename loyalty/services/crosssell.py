"""The cross-sell campaign (seed 001): the daily near-tier scan (which applies Zalo's caps on
promotional messages), and the 72-hour bonus with its reversal notice. The tag that follows
a sent nudge is ``services.tags``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from loyalty.domain.channels import SkipReason, cap_reason
from loyalty.domain.crosssell import (
    bonus_deadline,
    bonus_reversal_fields,
    campaign_day,
    nudge_fields,
    tag_period_start,
)
from loyalty.domain.messages import OPEN_STATUSES, MessageKind, MessageStatus
from loyalty.domain.points import LedgerKind, Posting, bonus_taken_back
from loyalty.domain.tiers import near_tier_ranges
from loyalty.program import Program
from loyalty.services.holdout import assign_groups, held_out_lately, holdout_of
from loyalty.services.ledger import Member
from loyalty.services.outbox import new_message
from loyalty.storage.db import transaction
from loyalty.storage.queries import cap_history, reachable_by
from loyalty.storage.tables import CampaignRun, Customer, CustomerTag, LedgerEntry, Message

if TYPE_CHECKING:
    from loyalty.bootstrap import Loyalty


@dataclass
class ScanReport:
    selected: int  # near the next tier, not nudged lately, reachable by the plan
    unreachable: int  # near the next tier, but no channel of the plan reaches them
    queued: list[int] = field(default_factory=list)  # message ids of new nudges
    held_out: int = 0  # selected, and kept from the nudge by the holdout
    # Selected, but skipped for Zalo's caps on promotional messages.
    over_monthly_cap: int = 0
    no_recent_contact: int = 0


def near_next_tier(program: Program) -> ColumnElement[bool]:
    """The domain's near-tier ranges on the indexed points column."""
    return or_(*(Customer.points.between(low, high - 1)
                 for low, high in near_tier_ranges(program)))


def _not_nudged_lately(program: Program, as_of: datetime) -> ColumnElement[bool]:
    live_tag = exists().where(CustomerTag.customer_id == Customer.id,
                              CustomerTag.cleared_at.is_(None),
                              CustomerTag.expires_at > as_of)
    # A nudge still on its way, or any nudge within a tag period (one that failed for good
    # is not retried daily), keeps the member out of the scan.
    recent_nudge = exists().where(
        Message.kind == MessageKind.NUDGE, Message.customer_id == Customer.id,
        or_(Message.status.in_(OPEN_STATUSES),
            Message.created_at > tag_period_start(program, as_of)))
    return and_(~live_tag, ~recent_nudge)


def run_scan(loyalty: Loyalty, as_of: datetime, *, dry_run: bool = False) -> ScanReport:
    """Select who is near the next tier, hold out the holdout, and record a nudge for each
    of the others unless Zalo's caps forbid it; the caller dispatches the report's
    ``queued`` messages once this has committed."""
    zone = loyalty.zone
    day = campaign_day(as_of, zone)
    with transaction(loyalty.sessions) as session:
        # Read in the transaction: it holds the program lock, so no change runs across it.
        program = loyalty.program
        reachable = reachable_by(loyalty.plan(MessageKind.NUDGE))
        eligible = and_(near_next_tier(program), _not_nudged_lately(program, as_of),
                        ~held_out_lately(program, as_of))
        rows = session.execute(select(Customer, *cap_history(program, as_of, zone))
                               .where(eligible, reachable).order_by(Customer.id)).all()
        candidates = [customer for customer, *_ in rows]
        unreachable = session.scalar(
            select(func.count()).select_from(Customer).where(eligible, ~reachable)) or 0
        report = ScanReport(selected=len(candidates), unreachable=unreachable)
        if dry_run:
            held_out = holdout_of(program, candidates, day)
            to_nudge = [c for c in candidates if c.id not in held_out]
            report.held_out = len(held_out)
        else:
            # Both groups are assigned before the caps: a member Zalo's caps skip stays in
            # the nudged group, as a nudge that did not arrive.
            to_nudge, report.held_out = assign_groups(session, program, candidates, day,
                                                      as_of)
        history = {customer.id: (this_month, last_contact)
                   for customer, this_month, last_contact in rows}
        deadline = bonus_deadline(program, as_of)
        for customer in to_nudge:
            this_month, last_contact = history[customer.id]
            reason = cap_reason(program.channels.nudge, program, now=as_of,
                                promotional_this_month=this_month, last_contact=last_contact)
            if reason is SkipReason.MONTHLY_CAP:
                report.over_monthly_cap += 1
            elif reason is SkipReason.NO_RECENT_CONTACT:
                report.no_recent_contact += 1
            elif not dry_run:
                fields = nudge_fields(program, points=customer.points, name=customer.name,
                                      deadline=deadline, zone=zone)
                message_id = new_message(session, program, kind=MessageKind.NUDGE,
                                         customer=customer, fields=fields, now=as_of,
                                         period=day)
                if message_id is not None:  # None: this day's scan already nudged them
                    report.queued.append(message_id)
        if dry_run:
            return report
        session.add(CampaignRun(campaign="crosssell", as_of=as_of, period=day,
                                dry_run=dry_run, selected=report.selected,
                                queued=len(report.queued), unreachable=unreachable,
                                over_monthly_cap=report.over_monthly_cap,
                                no_recent_contact=report.no_recent_contact,
                                created_at=loyalty.clock()))
    return report


def open_nudges(customer_id: Any, earliest: Any, latest: Any) -> Select[tuple[int, Any]]:
    """(id, sent_at) of the latest nudge sent to ``customer_id`` within ``[earliest, latest]``
    (``bonus_window_for_order``) that has paid no bonus yet. Each argument may be a value, a
    column of an outer query or a bind parameter."""
    # The ledger's unique (nudge_id, kind) is the index this looks through.
    paid = exists().where(LedgerEntry.nudge_id == Message.id,
                          LedgerEntry.kind == LedgerKind.CROSSSELL_BONUS)
    return (select(Message.id, Message.sent_at)
            .where(Message.kind == MessageKind.NUDGE, Message.customer_id == customer_id,
                   Message.status == MessageStatus.SENT,
                   Message.sent_at.between(earliest, latest), ~paid)
            .order_by(Message.sent_at.desc()).limit(1))


def bonus_reversal_notice(session: Session, program: Program, customer: Member,
                          order_id: str, reversal: Sequence[Posting],
                          now: datetime) -> int | None:
    """A cancelled or returned order that had paid a bonus: the member is told it is gone."""
    taken = bonus_taken_back(reversal)
    if not taken:
        return None
    fields = bonus_reversal_fields(order_id=order_id, bonus_points=taken,
                                   points=customer.points, name=customer.name)
    return new_message(session, program, kind=MessageKind.BONUS_REVERSAL, customer=customer,
                       fields=fields, now=now, order_id=order_id)
