"""Applying one order event: one transaction, at most one effect, whatever the redelivery."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from loyalty.domain.crosssell import bonus_reversal_text, earns_bonus
from loyalty.domain.events import CustomerInfo, OrderEvent, OrderStatus, PaymentStatus
from loyalty.domain.orders import OrderState, PointsAction, apply_order_event
from loyalty.domain.tiers import points_for_order
from loyalty.program import Program
from loyalty.services.ledger import post_entry
from loyalty.services.messaging import new_message
from loyalty.storage.queries import insert_if_absent, lock_customer, lock_order, order_entries
from loyalty.storage.tables import Customer, LedgerEntry, Message, Order, ProcessedEvent


class Outcome(StrEnum):
    EARNED = "earned"
    REVERSED = "reversed"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


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
            "id": info.id, "tier": program.tiers[0].code, "points": 0,
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
        payment_status=PaymentStatus(order.payment_status),
        total_payable=order.total_payable, shipping_fee=order.shipping_fee,
        placed_at=order.placed_at, occurred_at=order.occurred_at, earned=order.earned,
        reversed=order.reversed)


def _save(session: Session, order: Order | None, order_id: str, state: OrderState,
          now: datetime) -> Order:
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
    order.updated_at = now
    return order


def credit_order(session: Session, program: Program, customer: Customer, event: OrderEvent,
                 now: datetime) -> list[LedgerEntry]:
    # The multiplier is that of the tier held before this order is credited.
    tier = program.tier(customer.tier)
    points = points_for_order(event.total_payable, event.shipping_fee, tier.multiplier,
                              program.money_per_point)
    entries = [post_entry(session, program, customer, kind="order_credit", points=points,
                          now=now, multiplier=tier.multiplier, order_id=event.order_id)]
    nudge = _nudge_paying_a_bonus(session, program, customer.id, event.placed_at)
    if nudge is not None:
        # Not multiplied: the bonus is the same for every tier.
        entries.append(post_entry(session, program, customer, kind="crosssell_bonus",
                                  points=program.crosssell.bonus_points, now=now,
                                  multiplier="1", order_id=event.order_id, nudge_id=nudge))
    return entries


def _nudge_paying_a_bonus(session: Session, program: Program, customer_id: str,
                          placed_at: datetime) -> int | None:
    """The nudge sent at most 72 h before the order was placed that has paid no bonus yet.

    The member's row lock is held, so no other bonus of this member can appear meanwhile;
    the ledger's unique (nudge_id, kind) would refuse one anyway.
    """
    window = timedelta(hours=program.crosssell.bonus_window_hours)
    paid = select(LedgerEntry.nudge_id).where(LedgerEntry.kind == "crosssell_bonus",
                                              LedgerEntry.customer_id == customer_id,
                                              LedgerEntry.nudge_id.is_not(None))
    candidates = session.scalars(
        select(Message).where(Message.kind == "nudge", Message.customer_id == customer_id,
                              Message.status == "sent", Message.sent_at <= placed_at,
                              Message.sent_at >= placed_at - window,
                              Message.id.not_in(paid))
        .order_by(Message.sent_at.desc()))
    for nudge in candidates:
        assert nudge.sent_at is not None
        if earns_bonus(program, nudge.sent_at, placed_at):
            return nudge.id
    return None


def reverse_order(session: Session, program: Program, customer: Customer, order_id: str,
                  now: datetime) -> list[LedgerEntry]:
    """Take off exactly what the order's rows added (base and bonus), never a recomputation."""
    reversal_of = {"order_credit": "order_reversal",
                   "crosssell_bonus": "crosssell_bonus_reversal"}
    return [
        post_entry(session, program, customer, kind=reversal_of[entry.kind],
                   points=-entry.points, now=now, multiplier=entry.multiplier,
                   tier=entry.tier, order_id=order_id, nudge_id=entry.nudge_id)
        for entry in order_entries(session, order_id, tuple(reversal_of))
    ]


def _bonus_reversal_notice(session: Session, program: Program, customer: Customer,
                           order_id: str, reversals: list[LedgerEntry], channel: str,
                           now: datetime) -> int | None:
    taken = -sum(entry.points for entry in reversals
                 if entry.kind == "crosssell_bonus_reversal")
    if not taken:
        return None
    text = bonus_reversal_text(program, order_id=order_id, bonus_points=taken,
                               points=customer.points, name=customer.name)
    return new_message(session, kind="bonus_reversal", customer=customer, channel=channel,
                       text=text, now=now, order_id=order_id)


def apply_event(session: Session, program: Program, event: OrderEvent, now: datetime,
                *, notify_channel: str | None = None) -> Applied:
    """Apply ``event`` inside the caller's transaction.

    ``notify_channel`` is where a customer is told that a bonus was taken back; None (the
    historical import) tells nobody. Raises ``CustomerMismatch`` when the event cannot be
    applied; the caller rolls back and keeps the event among the refused ones.
    """
    if insert_if_absent(session, ProcessedEvent, {
            "event_id": event.event_id, "order_id": event.order_id,
            "outcome": Outcome.UNCHANGED, "duplicates": 0, "processed_at": now},
            ["event_id"]) is None:
        session.execute(update(ProcessedEvent).where(ProcessedEvent.event_id == event.event_id)
                        .values(duplicates=ProcessedEvent.duplicates + 1))
        return Applied(Outcome.DUPLICATE, event.customer.id)

    # Lock order: member first, then order. Every event of an order names the order's
    # member, so two events of one order queue on the same member lock.
    customer = _member(session, program, event.customer, now)
    order = lock_order(session, event.order_id)
    before = _state(order) if order is not None else None
    change = apply_order_event(before, event)
    _save(session, order, event.order_id, change.state, now)
    session.flush()

    entries: list[LedgerEntry] = []
    messages: list[int] = []
    if change.action is PointsAction.EARN:
        entries = credit_order(session, program, customer, event, now)
        outcome = Outcome.EARNED
    elif change.action is PointsAction.REVERSE:
        entries = reverse_order(session, program, customer, event.order_id, now)
        outcome = Outcome.REVERSED
        if notify_channel is not None:
            notice = _bonus_reversal_notice(session, program, customer, event.order_id,
                                            entries, notify_channel, now)
            messages = [notice] if notice is not None else []
    else:
        outcome = Outcome.UNCHANGED if change.state == before else Outcome.UPDATED

    session.execute(update(ProcessedEvent).where(ProcessedEvent.event_id == event.event_id)
                    .values(outcome=outcome))
    return Applied(outcome, customer.id, sum(entry.points for entry in entries),
                   tuple(messages))
