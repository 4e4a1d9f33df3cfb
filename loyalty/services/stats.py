"""Counters an operator wants, read from the database.

Every worker process applies events to the same database, so counting there is right across
all of them, survives restarts, and needs no coordination. Each reader below is one small
query that returns one or more ``Counts``; a new counter is one more reader appended to
``READERS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from loyalty.domain.channels import SkipReason
from loyalty.domain.messages import Channel, MessageKind, MessageStatus
from loyalty.domain.orders import APPLIED_OUTCOMES
from loyalty.domain.points import LedgerKind
from loyalty.program import Program
from loyalty.services.campaign_results import counts_by_group
from loyalty.storage.db import transaction
from loyalty.storage.tables import (
    CampaignRun,
    Customer,
    LedgerEntry,
    Message,
    ProcessedEvent,
    RejectedEvent,
)

if TYPE_CHECKING:
    from loyalty.bootstrap import Loyalty

# How far back the cross-sell conversions on /metrics look.
RECENT = timedelta(days=30)


@dataclass(frozen=True)
class Counts:
    """One counter or gauge, broken down by one label (``outcome``, ``kind``, ``tier``…)."""

    name: str
    description: str
    label: str
    values: dict[str, int] = field(default_factory=dict)
    # A counter only grows (Prometheus can then compute rates); a gauge goes up and down.
    cumulative: bool = True


Reader = Callable[[Session, Program], Iterable[Counts]]


def _zeros(keys: Iterable[str]) -> dict[str, int]:
    # Every known label value is present from the start, so a series never "appears" late and
    # an alert on its rate works from the first event.
    return dict.fromkeys(map(str, keys), 0)


def _grouped(session: Session, column: Any, value: Any, *where: Any) -> dict[str, int]:
    """``value`` (an aggregate) per distinct ``column``, over the rows matching ``where``."""
    return {str(key): int(number or 0) for key, number in session.execute(
        select(column, value).where(*where).group_by(column))}


def event_counts(session: Session, program: Program) -> list[Counts]:
    results = _zeros(APPLIED_OUTCOMES) | _grouped(
        session, ProcessedEvent.outcome, func.count())
    duplicates = session.scalar(select(func.coalesce(func.sum(ProcessedEvent.duplicates), 0)))
    refused = session.scalar(select(func.count()).select_from(RejectedEvent)) or 0
    waiting = _grouped(session, RejectedEvent.source, func.count(),
                       RejectedEvent.replayed_at.is_(None)) if refused else {}
    return [
        Counts("events", "order events by outcome", "outcome",
               {"applied": sum(results.values()), "duplicate": int(duplicates or 0),
                "refused": int(refused)}),
        Counts("applied_events", "applied order events by what they did", "result", results),
        Counts("refused_events_waiting", "refused events not yet replayed, by source",
               "source", _zeros(("http", "queue", "import")) | waiting, cumulative=False),
    ]


def ledger_counts(session: Session, program: Program) -> list[Counts]:
    rows = session.execute(
        select(LedgerEntry.kind, func.count(), func.coalesce(func.sum(LedgerEntry.points), 0))
        .group_by(LedgerEntry.kind)).all()
    entries = _zeros(LedgerKind) | {kind: int(number) for kind, number, _ in rows}
    # Reversals are negative rows; a counter of points taken back reads better positive.
    points = _zeros(LedgerKind) | {kind: abs(int(total)) for kind, _, total in rows}
    return [
        Counts("ledger_points", "points moved by the ledger, by kind (reversals as positive)",
               "kind", points),
        Counts("ledger_entries", "ledger rows by kind", "kind", entries),
    ]


def members_by_tier(session: Session, program: Program) -> list[Counts]:
    tiers = _zeros(tier.code for tier in program.tiers) | _grouped(
        session, Customer.tier, func.count())
    return [Counts("members", "members by tier", "tier", tiers, cumulative=False)]


def message_counts(session: Session, program: Program) -> list[Counts]:
    """Outbox messages (nudges, bonus-reversal notices, birthday gifts) by kind and status."""
    counts = []
    for kind in MessageKind:
        by_status = _zeros(MessageStatus) | _grouped(
            session, Message.status, func.count(), Message.kind == kind)
        # sent and failed only grow; pending, held and sending come and go.
        counts.append(Counts(f"{kind}_messages", f"{kind} messages by status", "status",
                             by_status, cumulative=False))
    return counts


def crosssell_counts(session: Session, program: Program) -> list[Counts]:
    """Members the cross-sell scan selected, by holdout group; and of those selected in the
    last 30 days (a bounded window: every scrape counts their orders), who converted."""
    counts = counts_by_group(session, datetime.now(UTC) - RECENT)
    return [
        Counts("crosssell_selected", "members selected by the cross-sell scan, by group",
               "group", counts.selected),
        Counts("crosssell_selected_30d", "members selected in the last 30 days, by group",
               "group", counts.recent, cumulative=False),
        Counts("crosssell_converted_30d", "of those, members with an earning order within "
               "72 h of the scan, by group", "group",
               counts.recent_converted, cumulative=False),
    ]


def channel_counts(session: Session, program: Program) -> list[Counts]:
    """Sent messages by the channel that carried them, and nudges skipped (never tried) by
    why: Zalo's caps and no channel, at the scan and when sending."""
    counts = [Counts(f"{kind}_sent_by_channel", f"{kind} messages sent, by channel", "channel",
                     _zeros(Channel) | _grouped(session, Message.channel, func.count(),
                                                Message.kind == kind,
                                                Message.status == MessageStatus.SENT))
              for kind in MessageKind]
    at_scan = session.execute(select(
        func.coalesce(func.sum(CampaignRun.over_monthly_cap), 0),
        func.coalesce(func.sum(CampaignRun.no_recent_contact), 0),
        func.coalesce(func.sum(CampaignRun.unreachable), 0))
        .where(CampaignRun.campaign == "crosssell")).one()
    skipped = dict(zip((SkipReason.MONTHLY_CAP, SkipReason.NO_RECENT_CONTACT,
                        SkipReason.NO_CHANNEL), map(int, at_scan), strict=True))
    for reason, number in _grouped(session, Message.skip_reason, func.count(),
                                   Message.kind == MessageKind.NUDGE,
                                   Message.status == MessageStatus.SKIPPED).items():
        skipped[reason] = skipped.get(reason, 0) + number
    counts.append(Counts("nudge_skips", "nudges skipped by the scans' caps and channel plan, "
                         "by reason", "reason", _zeros(SkipReason) | skipped))
    return counts


READERS: tuple[Reader, ...] = (event_counts, ledger_counts, members_by_tier, message_counts,
                               channel_counts, crosssell_counts)


def read_stats(loyalty: Loyalty, readers: Iterable[Reader] = READERS) -> list[Counts]:
    """Every reader's counters, read in one short transaction."""
    with transaction(loyalty.sessions) as session:
        return [counts for reader in readers for counts in reader(session, loyalty.program)]


def stats_json(stats: Iterable[Counts]) -> dict[str, dict[str, int]]:
    return {counts.name: dict(counts.values) for counts in stats}
