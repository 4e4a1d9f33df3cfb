"""Read side: the member view and the ledger of one customer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from loyalty.domain.member_view import MemberView, Tag, member_view
from loyalty.storage.db import transaction
from loyalty.storage.queries import total_spent
from loyalty.storage.tables import Customer, CustomerTag, LedgerEntry

if TYPE_CHECKING:
    from loyalty.bootstrap import Loyalty


class UnknownMember(LookupError):
    pass


def show_member(loyalty: Loyalty, customer_id: str) -> MemberView:
    with transaction(loyalty.sessions) as session:
        customer = session.get(Customer, customer_id)
        if customer is None:
            raise UnknownMember(customer_id)
        tags = tuple(Tag(tag.name, tag.expires_at) for tag in session.scalars(
            select(CustomerTag).where(CustomerTag.customer_id == customer_id,
                                      CustomerTag.cleared_at.is_(None),
                                      CustomerTag.expires_at > loyalty.clock())
            .order_by(CustomerTag.set_at)))
        return member_view(loyalty.program, customer.id, customer.points,
                           total_spent(session, customer.id), tags)


@dataclass(frozen=True)
class LedgerLine:
    kind: str
    points: int
    order_id: str | None
    balance_after: int
    created_at: datetime


def member_ledger(loyalty: Loyalty, customer_id: str, limit: int = 500) -> list[LedgerLine]:
    """Newest first."""
    with transaction(loyalty.sessions) as session:
        if session.get(Customer, customer_id) is None:
            raise UnknownMember(customer_id)
        rows = session.scalars(
            select(LedgerEntry).where(LedgerEntry.customer_id == customer_id)
            .order_by(LedgerEntry.id.desc()).limit(limit))
        return [LedgerLine(row.kind, row.points, row.order_id, row.balance_after,
                           row.created_at) for row in rows]
