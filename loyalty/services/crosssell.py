"""The daily near-tier scan (seed 001, Chiến dịch 1): select in SQL, record, queue nudges."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, exists, func, or_, select

from loyalty.bootstrap import Loyalty
from loyalty.domain.crosssell import bonus_deadline, campaign_day, nudge_text
from loyalty.domain.tiers import near_tier_ranges
from loyalty.program import Program
from loyalty.services.channels import channel_for
from loyalty.services.messaging import new_message
from loyalty.storage.db import transaction
from loyalty.storage.tables import CampaignRun, Customer, CustomerTag, Message

OPEN_STATUSES = ("pending", "sending", "held", "unknown")


@dataclass
class ScanReport:
    selected: int
    unreachable: int
    queued: list[int] = field(default_factory=list)  # message ids of new nudges


def near_next_tier(program: Program) -> ColumnElement[bool]:
    """``0 < points_to_next_tier < 300`` as ranges on the indexed points column."""
    return or_(*(Customer.points.between(low, high - 1)
                 for low, high in near_tier_ranges(program)))


def _not_nudged_lately(program: Program, as_of: datetime) -> ColumnElement[bool]:
    live_tag = exists().where(CustomerTag.customer_id == Customer.id,
                              CustomerTag.cleared_at.is_(None),
                              CustomerTag.expires_at > as_of)
    # A nudge still on its way, or any nudge within a tag period (one that failed for good
    # is not retried daily), keeps the member out of the scan.
    recent_nudge = exists().where(
        Message.kind == "nudge", Message.customer_id == Customer.id,
        or_(Message.status.in_(OPEN_STATUSES),
            Message.created_at > as_of - timedelta(days=program.crosssell.tag_days)))
    return and_(~live_tag, ~recent_nudge)


def run_scan(loyalty: Loyalty, as_of: datetime, *, dry_run: bool = False) -> ScanReport:
    program, zone = loyalty.program, ZoneInfo(loyalty.settings.timezone)
    channel = channel_for(loyalty.settings)
    reachable = Customer.phone.is_not(None) if channel == "zns" else \
        Customer.zalo_user_id.is_not(None)
    eligible = and_(near_next_tier(program), _not_nudged_lately(program, as_of))
    day = campaign_day(as_of, zone)
    with transaction(loyalty.sessions) as session:
        candidates = list(session.scalars(
            select(Customer).where(eligible, reachable).order_by(Customer.id)))
        unreachable = session.scalar(
            select(func.count()).select_from(Customer).where(eligible, ~reachable)) or 0
        report = ScanReport(selected=len(candidates), unreachable=unreachable)
        if dry_run:
            return report
        deadline = bonus_deadline(program, as_of)
        for customer in candidates:
            text = nudge_text(program, points=customer.points, name=customer.name,
                              deadline=deadline, zone=zone)
            message_id = new_message(session, kind="nudge", customer=customer,
                                     channel=channel, text=text, now=as_of, period=day)
            if message_id is not None:  # None: this day's scan already nudged them
                report.queued.append(message_id)
        session.add(CampaignRun(campaign="crosssell", as_of=as_of, period=day,
                                dry_run=dry_run, selected=report.selected,
                                queued=len(report.queued), unreachable=unreachable,
                                created_at=loyalty.clock()))
    return report
