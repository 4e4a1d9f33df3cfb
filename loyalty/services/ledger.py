"""Posting to the points ledger: the only way a balance or a tier changes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from loyalty.domain.tiers import tier_for_points
from loyalty.program import Program
from loyalty.storage.tables import Customer, LedgerEntry, TierChange


def post_entry(session: Session, program: Program, customer: Customer, *, kind: str,
               points: int, now: datetime, multiplier: Decimal | str, tier: str | None = None,
               order_id: str | None = None, nudge_id: int | None = None) -> LedgerEntry:
    """Append one ledger row, move the balance with it, and recompute the tier.

    The caller holds the member's row lock, so ``balance_after`` is exact and the balance
    always equals the sum of the member's rows.
    """
    customer.points += points
    customer.updated_at = now
    entry = LedgerEntry(
        customer_id=customer.id, kind=kind, points=points, order_id=order_id,
        nudge_id=nudge_id, tier=tier or customer.tier, multiplier=str(multiplier),
        balance_after=customer.points, created_at=now)
    session.add(entry)
    session.flush()  # the unique constraints speak here, before anything else is done
    reached = tier_for_points(program, customer.points)
    if reached.code != customer.tier:
        session.add(TierChange(customer_id=customer.id, from_tier=customer.tier,
                               to_tier=reached.code, points=customer.points,
                               ledger_entry_id=entry.id, changed_at=now))
        customer.tier = reached.code
    return entry
