"""Posting to the points ledger: the only writer of a balance, a ledger row and tier history.

SPEC §2 rows "ledger" (append-only, balance after each row) and "tier" (recomputed after
every ledger change, every change kept in the tier history).

Postings are made in memory on members whose rows the caller has locked, so each
``balance_after`` is exact; ``flush`` then writes the rows, the tier history and the new
balances set-wise, in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from loyalty.domain.points import LedgerKind, Posting
from loyalty.domain.tiers import tier_for_points
from loyalty.program import Program
from loyalty.storage.bulk import allocate_ids, insert_rows
from loyalty.storage.tables import Customer, LedgerEntry, TierChange

CONTACT_FIELDS = ("phone", "zalo_user_id", "name", "birthday")


@dataclass
class Member:
    """A member's row as the ledger moves it, held under the row lock."""

    id: str
    points: int
    tier: str
    phone: str | None = None
    zalo_user_id: str | None = None
    name: str | None = None
    birthday: date | None = None
    changed: bool = False

    def update_contact(self, **values: Any) -> None:
        """Fields an event names, when present, update the member (SPEC §3)."""
        for name, value in values.items():
            if value is not None and getattr(self, name) != value:
                setattr(self, name, value)
                self.changed = True


@dataclass
class Ledger:
    """Rows posted in this transaction, not yet written."""

    program: Program
    now: datetime
    rows: list[dict[str, Any]] = field(default_factory=list)
    tier_changes: list[dict[str, Any]] = field(default_factory=list)

    def post(self, member: Member, posting: Posting, order_id: str | None = None) -> Posting:
        """Append one row, move the balance with it, and recompute the tier; returns the
        posting as booked (at the tier held when it was posted, unless it names one)."""
        booked = replace(posting, tier=posting.tier or member.tier)
        member.points += posting.points
        member.changed = True
        row = {"customer_id": member.id, "kind": posting.kind, "points": posting.points,
               "order_id": order_id, "nudge_id": posting.nudge_id, "tier": booked.tier,
               "multiplier": str(posting.multiplier), "balance_after": member.points,
               "created_at": self.now}
        self.rows.append(row)
        reached = tier_for_points(self.program, member.points)
        if reached.code != member.tier:
            self.tier_changes.append({
                "customer_id": member.id, "from_tier": member.tier, "to_tier": reached.code,
                "points": member.points, "ledger_row": row, "changed_at": self.now})
            member.tier = reached.code
        return booked

    def post_all(self, member: Member, postings: Iterable[Posting],
                 order_id: str | None = None) -> list[Posting]:
        return [self.post(member, posting, order_id) for posting in postings]

    def flush(self, session: Session, members: Iterable[Member]) -> None:
        """Write the rows, the tier history and every changed member."""
        for row, entry_id in zip(self.rows, allocate_ids(session, LedgerEntry.__table__,
                                                         len(self.rows)), strict=True):
            row["id"] = entry_id
        insert_rows(session, LedgerEntry.__table__, self.rows)
        insert_rows(session, TierChange.__table__, [
            {**{k: v for k, v in change.items() if k != "ledger_row"},
             "ledger_entry_id": change["ledger_row"]["id"]} for change in self.tier_changes])
        save_members(session, [member for member in members if member.changed], self.now)
        self.rows, self.tier_changes = [], []


def lock_members(session: Session, customer_ids: Iterable[str]) -> dict[str, Member]:
    """The members that exist among ``customer_ids``, locked until the transaction ends,
    always in id order so that two transactions never wait on each other in a circle (on
    SQLite, BEGIN IMMEDIATE already serialises writers)."""
    rows = session.execute(
        select(Customer.id, Customer.points, Customer.tier, Customer.phone,
               Customer.zalo_user_id, Customer.name, Customer.birthday)
        .where(Customer.id.in_(sorted(set(customer_ids)))).order_by(Customer.id)
        .with_for_update())
    return {row.id: Member(*row) for row in rows}


_SAVE = update(Customer).where(Customer.id == bindparam("member_id")).values(
    points=bindparam("points"), tier=bindparam("tier"), phone=bindparam("phone"),
    zalo_user_id=bindparam("zalo_user_id"), name=bindparam("name"),
    birthday=bindparam("birthday"), updated_at=bindparam("updated_at"))


def save_members(session: Session, members: list[Member], now: datetime) -> None:
    if members:
        session.connection().execute(_SAVE, [
            {"member_id": m.id, "points": m.points, "tier": m.tier, "phone": m.phone,
             "zalo_user_id": m.zalo_user_id, "name": m.name, "birthday": m.birthday,
             "updated_at": now} for m in members])
        for member in members:
            member.changed = False


def order_postings(session: Session, order_ids: Iterable[str]) -> dict[str, list[Posting]]:
    """What the ledger holds of each order, oldest first."""
    postings: dict[str, list[Posting]] = {}
    for row in session.execute(
            select(LedgerEntry.order_id, LedgerEntry.kind, LedgerEntry.points,
                   LedgerEntry.multiplier, LedgerEntry.tier, LedgerEntry.nudge_id)
            .where(LedgerEntry.order_id.in_(set(order_ids))).order_by(LedgerEntry.id)):
        postings.setdefault(row.order_id, []).append(Posting(
            LedgerKind(row.kind), row.points, Decimal(row.multiplier), row.tier, row.nudge_id))
    return postings
