"""Read side: the member view and the ledger of one customer, named by the shop or signed in
on the member's page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, select
from sqlalchemy.orm import Session

from loyalty.domain.crosssell import bonus_offer, bonus_window_for_order
from loyalty.domain.member_view import MemberView, Tag, member_view
from loyalty.services.crosssell import open_nudges
from loyalty.services.zalo_links import linked_customer, linked_to
from loyalty.storage.db import transaction
from loyalty.storage.queries import spent_by
from loyalty.storage.tables import Customer, CustomerTag, LedgerEntry, Message
from loyalty.zalo.graph import ZaloIdentity

if TYPE_CHECKING:
    from loyalty.bootstrap import Loyalty


class UnknownMember(LookupError):
    pass


def show_member(loyalty: Loyalty, customer_id: str) -> MemberView:
    with transaction(loyalty.sessions) as session:
        view = _view(loyalty, session, customer_id, by_link=False)
    if view is None:
        raise UnknownMember(customer_id)
    return view


def show_signed_in(loyalty: Loyalty, identity: ZaloIdentity) -> MemberView:
    """The signed-in member's view; one not linked to a customer yet has the first tier and
    0 points."""
    with transaction(loyalty.sessions) as session:
        # A member linked before, the usual case, takes one statement.
        view = _view(loyalty, session, identity.zalo_id, by_link=True)
        if view is not None:
            return view
        customer_id = linked_customer(session, identity, loyalty.clock())
        if customer_id is None:
            return member_view(loyalty.program, None, 0, 0)
        view = _view(loyalty, session, customer_id, by_link=False)
        assert view is not None  # linked just now; customers are never deleted
        return view


@cache
def _view_statement(by_link: bool) -> Select[Any]:
    """The member view in one statement, a row per live tag, each with the member's points,
    spend and open nudge; built once (``/v1/me`` is read far more often than anything else).
    Parameters: ``who`` (a customer id, or a Zalo id linked to one), ``now``, ``earliest``."""
    now = bindparam("now")
    who = linked_to(bindparam("who")) if by_link else bindparam("who")
    open_nudge = open_nudges(Customer.id, bindparam("earliest"), now) \
        .with_only_columns(Message.sent_at).scalar_subquery()
    return (select(Customer.id, Customer.points, spent_by(Customer.id).label("spent"),
                   open_nudge.label("nudge_sent_at"), CustomerTag.name, CustomerTag.expires_at)
            .outerjoin(CustomerTag, and_(CustomerTag.customer_id == Customer.id,
                                         CustomerTag.cleared_at.is_(None),
                                         CustomerTag.expires_at > now))
            .where(Customer.id == who).order_by(CustomerTag.set_at))


def _view(loyalty: Loyalty, session: Session, who: str, *, by_link: bool) -> MemberView | None:
    program = loyalty.program
    # The open nudge is the one whose bonus an order placed now would earn.
    earliest, now = bonus_window_for_order(program, loyalty.clock())
    rows = session.execute(_view_statement(by_link),
                           {"who": who, "now": now, "earliest": earliest}).all()
    if not rows:
        return None
    member = rows[0]
    tags = tuple(Tag(row.name, row.expires_at) for row in rows if row.name is not None)
    offer = None if member.nudge_sent_at is None else bonus_offer(program,
                                                                  member.nudge_sent_at)
    return member_view(program, member.id, member.points, int(member.spent), tags, offer)


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
        lines = _ledger(session, linked_to(identity.zalo_id), limit)
        if lines:
            return lines
        customer_id = linked_customer(session, identity, loyalty.clock())
        return [] if customer_id is None else _ledger(session, customer_id, limit)


def _ledger(session: Session, customer_id: str | ColumnElement[str | None],
            limit: int) -> list[LedgerLine]:
    rows = session.scalars(
        select(LedgerEntry).where(LedgerEntry.customer_id == customer_id)
        .order_by(LedgerEntry.id.desc()).limit(limit))
    return [LedgerLine(row.kind, row.points, row.order_id, row.balance_after,
                       row.created_at) for row in rows]
