"""Applying one order event: one transaction, at most one effect, whatever the redelivery."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from loyalty.domain.events import (
    CustomerInfo,
    EventConflict,
    OrderEvent,
    OrderStatus,
    PaymentStatus,
)
from loyalty.domain.orders import OrderState, Outcome, PointsAction, apply_order_event
from loyalty.domain.points import Posting, order_credit, reversal
from loyalty.domain.tiers import new_member_tier
from loyalty.program import Program
from loyalty.services import crosssell
from loyalty.services.ledger import order_postings, post_all
from loyalty.storage.queries import insert_if_absent, lock_customer, lock_order
from loyalty.storage.tables import Customer, Order, ProcessedEvent


@dataclass(frozen=True)
class Applied:
    outcome: Outcome
    customer_id: str
    points: int = 0
    # Outbox messages this event created (a bonus reversal notice), to be sent after commit.
    messages: tuple[int, ...] = ()


def _member(session: Session, program: Program, info: CustomerInfo, now: datetime) -> Customer:
    """The member named by an event, locked; created on the first event that names them."""
    customer = lock_customer(session, info.id)
    if customer is None:
        # ON CONFLICT: two first events of one new member may race; one inserts, both lock.
        insert_if_absent(session, Customer, {
            "id": info.id, "tier": new_member_tier(program).code, "points": 0,
            "created_at": now, "updated_at": now}, ["id"])
        customer = lock_customer(session, info.id)
        assert customer is not None  # inserted just above; customers are never deleted
    for field in ("phone", "zalo_user_id", "name", "birthday"):
        value = getattr(info, field)
        if value is not None and getattr(customer, field) != value:
            setattr(customer, field, value)
            customer.updated_at = now
    return customer


def _state(order: Order) -> OrderState:
    return OrderState(
        customer_id=order.customer_id, status=OrderStatus(order.status),
        payment_status=PaymentStatus(order.payment_status), total_payable=order.total_payable,
        shipping_fee=order.shipping_fee, placed_at=order.placed_at,
        occurred_at=order.occurred_at, earned=order.earned, reversed=order.reversed)


def _save(session: Session, order: Order | None, order_id: str, state: OrderState,
          now: datetime) -> None:
    if order is None:
        order = Order(order_id=order_id)
        session.add(order)
    order.customer_id = state.customer_id
    order.status = state.status
    order.payment_status = state.payment_status
    order.total_payable = state.total_payable
    order.shipping_fee = state.shipping_fee
    order.placed_at = state.placed_at
    order.occurred_at = state.occurred_at
    order.earned = state.earned
    order.reversed = state.reversed
    order.spend = state.spend
    order.updated_at = now


def _first_delivery(session: Session, event: OrderEvent, now: datetime) -> bool:
    """Record the event as processed; False when it was already (a duplicate).

    Raises ``EventConflict`` when the id was processed with other content: that changes
    nothing and is kept among the refused events, so ops see the sender's bug.
    """
    digest = event.digest
    if insert_if_absent(session, ProcessedEvent, {
            "event_id": event.event_id, "order_id": event.order_id, "digest": digest,
            "outcome": Outcome.UNCHANGED, "duplicates": 0, "processed_at": now},
            ["event_id"]) is not None:
        return True
    known = session.scalar(select(ProcessedEvent.digest)
                           .where(ProcessedEvent.event_id == event.event_id))
    if known is not None and known != digest:
        raise EventConflict(event.event_id)
    session.execute(update(ProcessedEvent).where(ProcessedEvent.event_id == event.event_id)
                    .values(duplicates=ProcessedEvent.duplicates + 1))
    return False


def apply_event(session: Session, program: Program, event: OrderEvent, now: datetime,
                *, notify: bool = False) -> Applied:
    """Apply ``event`` inside the caller's transaction.

    ``notify``: whether a customer is told that a bonus was taken back; False (the
    historical import) tells nobody. Raises ``EventRefused`` when the event cannot be
    applied; the caller rolls back and keeps the event among the refused ones.
    """
    if not _first_delivery(session, event, now):
        return Applied(Outcome.DUPLICATE, event.customer.id)

    # Lock order: member first, then order. Every event of an order names the order's
    # member, so two events of one order queue on the same member lock.
    customer = _member(session, program, event.customer, now)
    order = lock_order(session, event.order_id)
    before = _state(order) if order is not None else None
    change = apply_order_event(before, event)
    _save(session, order, event.order_id, change.state, now)
    session.flush()

    postings: list[Posting] = []
    messages: list[int] = []
    if change.action is PointsAction.EARN:
        # The multiplier is that of the tier held before this order is credited.
        postings = [order_credit(program, program.tier(customer.tier), event.total_payable,
                                 event.shipping_fee)]
        bonus = crosssell.bonus_for_order(session, program, customer.id, event.placed_at)
        postings += [bonus] if bonus is not None else []
        outcome = Outcome.EARNED
    elif change.action is PointsAction.REVERSE:
        postings = reversal(order_postings(session, event.order_id))
        outcome = Outcome.REVERSED
    else:
        outcome = Outcome.UNCHANGED if change.state == before else Outcome.UPDATED
    post_all(session, program, customer, postings, now=now, order_id=event.order_id)
    if change.action is PointsAction.REVERSE and notify:
        notice = crosssell.bonus_reversal_notice(session, program, customer, event.order_id,
                                                 postings, now)
        messages = [notice] if notice is not None else []

    session.execute(update(ProcessedEvent).where(ProcessedEvent.event_id == event.event_id)
                    .values(outcome=outcome))
    return Applied(outcome, customer.id, sum(p.points for p in postings), tuple(messages))
