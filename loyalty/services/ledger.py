"""Posting to the points ledger: the only writer of a balance, a ledger row and tier history.

SPEC §2 rows "ledger" (append-only, balance after each row) and "tier" (recomputed after
every ledger change, every change kept in the tier history).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from loyalty.domain.points import LedgerKind, Posting
from loyalty.domain.tiers import TierChangeReason, tier_for_points
from loyalty.program import Program
from loyalty.storage.tables import Customer, LedgerEntry, TierChange


def post(session: Session, program: Program, customer: Customer, posting: Posting, *,
         now: datetime, order_id: str | None = None) -> LedgerEntry:
    """Append one ledger row, move the balance with it, and recompute the tier.

    The caller holds the member's row lock, so ``balance_after`` is exact and the balance
    always equals the sum of the member's rows.
    """
    customer.points += posting.points
    customer.updated_at = now
    entry = LedgerEntry(
        customer_id=customer.id, kind=posting.kind, points=posting.points, order_id=order_id,
        nudge_id=posting.nudge_id, tier=posting.tier or customer.tier,
        multiplier=str(posting.multiplier), balance_after=customer.points,
        refunded_to=posting.refunded_to, created_at=now)
    session.add(entry)
    session.flush()  # the unique constraints speak here, before anything else is done
    reached = tier_for_points(program, customer.points)
    if reached.code != customer.tier:
        session.add(TierChange(customer_id=customer.id, from_tier=customer.tier,
                               to_tier=reached.code, points=customer.points,
                               reason=TierChangeReason.POINTS, ledger_entry_id=entry.id,
                               changed_at=now))
        customer.tier = reached.code
    return entry


def post_all(session: Session, program: Program, customer: Customer,
             postings: Iterable[Posting], *, now: datetime,
             order_id: str | None = None) -> list[LedgerEntry]:
    return [post(session, program, customer, posting, now=now, order_id=order_id)
            for posting in postings]


def order_postings(session: Session, order_id: str) -> list[Posting]:
    """What the ledger holds of one order, oldest first."""
    return [Posting(LedgerKind(row.kind), row.points, Decimal(row.multiplier), row.tier,
                    row.nudge_id, row.refunded_to)
            for row in session.scalars(select(LedgerEntry).where(
                LedgerEntry.order_id == order_id).order_by(LedgerEntry.id))]
