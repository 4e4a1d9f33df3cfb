"""Applying order events a batch at a time, in the caller's transaction: each event exactly
once (the processed-event key), each member under its row lock, the events of one member in
arrival order. A single event is a batch of one.

A few statements read what the batch needs (the members, their orders and those orders'
ledger rows, the nudges that may pay a bonus); the domain's rules run in memory; a few
set-wise statements write the result.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from loyalty.domain.crosssell import bonus_window_for_order, nudge_paying_bonus
from loyalty.domain.events import (
    EventConflict,
    EventRefused,
    OrderEvent,
    OrderStatus,
    PaymentStatus,
)
from loyalty.domain.messages import MessageKind, MessageStatus
from loyalty.domain.orders import (
    OrderState,
    Outcome,
    PointsAction,
    apply_order_event,
    outcome_of,
    postings_for,
)
from loyalty.domain.points import LedgerKind, Posting
from loyalty.domain.tiers import new_member_tier
from loyalty.program import Program
from loyalty.services import crosssell
from loyalty.services.ledger import Ledger, Member, lock_members, order_postings
from loyalty.storage.bulk import insert_rows
from loyalty.storage.queries import insert_missing
from loyalty.storage.tables import Customer, LedgerEntry, Message, Order, ProcessedEvent


@dataclass(frozen=True)
class Applied:
    """What delivering one event did."""

    event_id: str
    order_id: str
    customer_id: str
    outcome: Outcome
    points: int = 0
    # Outbox messages this event created (a bonus reversal notice), to be sent after commit.
    messages: tuple[int, ...] = ()
    refusal: EventRefused | None = None


class ConcurrentChange(Exception):
    """Another transaction created a member this batch took for new: what the batch read of
    that member's orders may be stale, so the whole batch must be tried again."""


def apply_events(session: Session, program: Program, events: Sequence[OrderEvent],
                 now: datetime, *, notify: bool = False) -> list[Applied]:
    """Apply ``events`` in arrival order; one ``Applied`` per event, in the same order.

    ``notify``: whether a customer is told that a bonus was taken back; False (the
    historical import) tells nobody. An event that cannot be applied comes back refused
    (``refusal``) and leaves no trace; the others apply.
    """
    results: dict[int, Applied] = {}
    fresh = _first_deliveries(session, events, now, results)

    members = lock_members(session, (events[i].customer.id for i in fresh))
    orders = _lock_orders(session, {events[i].order_id for i in fresh})
    stored = set(orders)
    changes = []
    for i in fresh:
        event = events[i]
        try:
            change = apply_order_event(orders.get(event.order_id), event)
        except EventRefused as refusal:
            results[i] = _refused(event, refusal)
            continue
        changes.append((i, change, orders.get(event.order_id)))
        orders[event.order_id] = change.state
    _add_new_members(session, program, members,
                     {events[i].customer.id for i, _, _ in changes}, now)

    rows = order_postings(session, {events[i].order_id for i, change, _ in changes
                                    if set(change.actions) - {PointsAction.EARN}})
    earning = [events[i] for i, change, _ in changes if PointsAction.EARN in change.actions]
    nudges, paid = _bonus_candidates(session, program, earning)
    ledger = Ledger(program, now)
    for i, change, before in changes:
        event = events[i]
        member = members[event.customer.id]
        member.update_contact(phone=event.customer.phone,
                              zalo_user_id=event.customer.zalo_user_id,
                              name=event.customer.name, birthday=event.customer.birthday)
        posted: list[Posting] = []
        for action in change.actions:
            bonus = None
            if action is PointsAction.EARN:
                bonus = nudge_paying_bonus(program, nudges.get(member.id, ()), paid,
                                           event.placed_at)
                paid.update([bonus] if bonus is not None else [])
            step = ledger.post_all(member, postings_for(
                program, action, change.state, event, held=program.tier(member.tier),
                order_rows=rows.get(event.order_id, []), bonus_nudge=bonus), event.order_id)
            rows.setdefault(event.order_id, []).extend(step)
            posted += step
        messages: tuple[int, ...] = ()
        if notify:
            notice = crosssell.bonus_reversal_notice(session, program, member, event.order_id,
                                                     posted, now)
            messages = () if notice is None else (notice,)
        results[i] = Applied(event.event_id, event.order_id, member.id,
                             outcome_of(change, before), sum(p.points for p in posted),
                             messages)

    _refuse_copies_of_refused(events, fresh, results)
    ledger.flush(session, members.values())
    _save_orders(session, {events[i].order_id: orders[events[i].order_id]
                           for i, _, _ in changes}, stored, now)
    _record_outcomes(session, [results[i] for i in fresh])
    return [results[i] for i in range(len(events))]




def _refused(event: OrderEvent, refusal: EventRefused) -> Applied:
    return Applied(event.event_id, event.order_id, event.customer.id, Outcome.REFUSED,
                   refusal=refusal)


def _first_deliveries(session: Session, events: Sequence[OrderEvent], now: datetime,
                      results: dict[int, Applied]) -> list[int]:
    """Record the batch's events as processed; returns the indexes of those seen for the
    first time, in arrival order, and fills ``results`` for the others.

    The same id with other content is a sender's bug: it changes nothing and is refused
    (``EventConflict``), so ops see it among the refused events.
    """
    first: dict[str, int] = {}
    for i, event in enumerate(events):
        first.setdefault(event.event_id, i)
    # In id order: two batches that share events then never wait on each other in a circle.
    new = set(insert_missing(session, ProcessedEvent, [
        {"event_id": event_id, "order_id": events[i].order_id, "digest": events[i].digest,
         "outcome": Outcome.UNCHANGED, "duplicates": 0, "processed_at": now}
        for event_id, i in sorted(first.items())], key="event_id"))
    known = {event_id: digest for event_id, digest in session.execute(
        select(ProcessedEvent.event_id, ProcessedEvent.digest)
        .where(ProcessedEvent.event_id.in_(set(first) - new)))} if len(new) < len(first) \
        else {}
    repeats: Counter[str] = Counter()
    fresh = []
    for i, event in enumerate(events):
        if i == first[event.event_id] and event.event_id in new:
            fresh.append(i)
            continue
        # Compared with what was processed: the stored digest, or this batch's first copy.
        digest = known.get(event.event_id, events[first[event.event_id]].digest)
        if digest is not None and digest != event.digest:
            results[i] = _refused(event, EventConflict(event.event_id))
        else:
            results[i] = Applied(event.event_id, event.order_id, event.customer.id,
                                 Outcome.DUPLICATE)
            repeats[event.event_id] += 1
    if repeats:
        session.connection().execute(
            update(ProcessedEvent).where(ProcessedEvent.event_id == bindparam("key"))
            .values(duplicates=ProcessedEvent.duplicates + bindparam("repeats")),
            [{"key": event_id, "repeats": count} for event_id, count in repeats.items()])
    return fresh


def _refuse_copies_of_refused(events: Sequence[OrderEvent], fresh: list[int],
                              results: dict[int, Applied]) -> None:
    """A later copy of an event refused in this batch is refused too, as it would be had it
    come on its own: the refused one left no processed row."""
    refused = {results[i].event_id: results[i].refusal for i in fresh
               if results[i].outcome is Outcome.REFUSED}
    for i, event in enumerate(events):
        if results[i].outcome is Outcome.DUPLICATE and event.event_id in refused:
            results[i] = _refused(event, refused[event.event_id] or EventConflict(event.event_id))


def _lock_orders(session: Session, order_ids: set[str]) -> dict[str, OrderState]:
    """The orders that exist among ``order_ids``, locked, in id order."""
    columns = [Order.__table__.c[name] for name in _ORDER_COLUMNS]
    rows = session.execute(select(Order.order_id, *columns)
                           .where(Order.order_id.in_(sorted(order_ids)))
                           .order_by(Order.order_id).with_for_update())
    return {row.order_id: OrderState(
        customer_id=row.customer_id, status=OrderStatus(row.status),
        payment_status=PaymentStatus(row.payment_status), total_payable=row.total_payable,
        shipping_fee=row.shipping_fee, placed_at=row.placed_at, occurred_at=row.occurred_at,
        earned=row.earned, reversed=row.reversed, earning=row.earning, refunded=row.refunded,
        refunded_status=row.refunded_status) for row in rows}


def _add_new_members(session: Session, program: Program, members: dict[str, Member],
                     customer_ids: set[str], now: datetime) -> None:
    """Create the members named for the first time; a new customer starts at the first
    tier with 0 points."""
    missing = sorted(customer_ids - set(members))
    first_tier = new_member_tier(program).code
    created = set(insert_missing(session, Customer, [
        {"id": customer_id, "tier": first_tier, "points": 0, "created_at": now,
         "updated_at": now} for customer_id in missing], key="id"))
    if created != set(missing):
        raise ConcurrentChange(sorted(set(missing) - created))
    members.update({customer_id: Member(customer_id, 0, first_tier)
                    for customer_id in missing})


def _bonus_candidates(session: Session, program: Program, earning: list[OrderEvent]
                      ) -> tuple[dict[str, list[tuple[int, datetime]]], set[int]]:
    """The sent nudges whose window may hold the orders that earn, by member, and the
    nudges that already paid their bonus."""
    if not earning:
        return {}, set()
    customers = {event.customer.id for event in earning}
    earliest = min(bonus_window_for_order(program, e.placed_at)[0] for e in earning)
    latest = max(bonus_window_for_order(program, e.placed_at)[1] for e in earning)
    nudges: dict[str, list[tuple[int, datetime]]] = {}
    for row in session.execute(
            select(Message.customer_id, Message.id, Message.sent_at)
            .where(Message.kind == MessageKind.NUDGE, Message.customer_id.in_(customers),
                   Message.status == MessageStatus.SENT,
                   Message.sent_at.between(earliest, latest))):
        nudges.setdefault(row.customer_id, []).append((row.id, row.sent_at))
    if not nudges:
        return {}, set()
    paid = set(session.scalars(select(LedgerEntry.nudge_id).where(
        LedgerEntry.kind == LedgerKind.CROSSSELL_BONUS,
        LedgerEntry.customer_id.in_(set(nudges)))))
    return nudges, paid


_ORDER_COLUMNS = ("customer_id", "status", "payment_status", "total_payable", "shipping_fee",
                  "placed_at", "occurred_at", "earned", "reversed", "earning", "refunded",
                  "refunded_status")
_UPDATE_ORDER = update(Order).where(Order.order_id == bindparam("key")).values(
    {name: bindparam(name) for name in (*_ORDER_COLUMNS, "spend", "updated_at")})


def _save_orders(session: Session, orders: dict[str, OrderState], stored: set[str],
                 now: datetime) -> None:
    rows = [{"order_id": order_id, **{name: getattr(state, name) for name in _ORDER_COLUMNS},
             "spend": state.spend, "updated_at": now} for order_id, state in orders.items()]
    insert_rows(session, Order.__table__, [row for row in rows if row["order_id"] not in stored])
    changed = [{**row, "key": row.pop("order_id")} for row in rows if row["order_id"] in stored]
    if changed:
        session.connection().execute(_UPDATE_ORDER, changed)


def _record_outcomes(session: Session, applied: Iterable[Applied]) -> None:
    """What each processed event did; a refused one leaves no processed row."""
    outcomes = [{"key": a.event_id, "outcome": a.outcome} for a in applied
                if a.outcome not in (Outcome.UNCHANGED, Outcome.REFUSED)]
    if outcomes:
        session.connection().execute(
            update(ProcessedEvent).where(ProcessedEvent.event_id == bindparam("key"))
            .values(outcome=bindparam("outcome")), outcomes)
    refused = [a.event_id for a in applied if a.outcome is Outcome.REFUSED]
    if refused:
        session.execute(delete(ProcessedEvent).where(ProcessedEvent.event_id.in_(refused)))

