"""Read side: the member view and the ledger of one customer, named by the shop or signed in
on the member's page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from loyalty.domain.member_view import MemberView, Tag, member_view
from loyalty.services.crosssell import offer_now
from loyalty.services.zalo_links import linked_customer
from loyalty.storage.db import transaction
from loyalty.storage.queries import total_spent
from loyalty.storage.tables import Customer, CustomerTag, LedgerEntry
from loyalty.zalo.graph import ZaloIdentity

if TYPE_CHECKING:
    from loyalty.bootstrap import Loyalty


class UnknownMember(LookupError):
    pass


def show_member(loyalty: Loyalty, customer_id: str) -> MemberView:
    with transaction(loyalty.sessions) as session:
        return _view(loyalty, session, customer_id)


def show_signed_in(loyalty: Loyalty, identity: ZaloIdentity) -> MemberView:
    """The signed-in member's view; one not linked to a customer yet has the first tier and
    0 points."""
    with transaction(loyalty.sessions) as session:
        customer_id = linked_customer(session, identity, loyalty.clock())
        if customer_id is None:
            return member_view(loyalty.program, None, 0, 0)
        return _view(loyalty, session, customer_id)


def _view(loyalty: Loyalty, session: Session, customer_id: str) -> MemberView:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise UnknownMember(customer_id)
    now = loyalty.clock()
    tags = tuple(Tag(tag.name, tag.expires_at) for tag in session.scalars(
        select(CustomerTag).where(CustomerTag.customer_id == customer_id,
                                  CustomerTag.cleared_at.is_(None),
                                  CustomerTag.expires_at > now)
        .order_by(CustomerTag.set_at)))
    return member_view(loyalty.program, customer.id, customer.points,
                       total_spent(session, customer.id), tags,
                       offer_now(session, loyalty.program, customer.id, now))


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
        return _ledger(session, customer_id, limit)


def signed_in_ledger(loyalty: Loyalty, identity: ZaloIdentity,
                     limit: int = 500) -> list[LedgerLine]:
    """The signed-in member's ledger, newest first; empty while no customer is linked."""
    with transaction(loyalty.sessions) as session:
        customer_id = linked_customer(session, identity, loyalty.clock())
        return [] if customer_id is None else _ledger(session, customer_id, limit)


def _ledger(session: Session, customer_id: str, limit: int) -> list[LedgerLine]:
    rows = session.scalars(
        select(LedgerEntry).where(LedgerEntry.customer_id == customer_id)
        .order_by(LedgerEntry.id.desc()).limit(limit))
    return [LedgerLine(row.kind, row.points, row.order_id, row.balance_after,
                       row.created_at) for row in rows]
