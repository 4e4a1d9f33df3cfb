"""One order's lifecycle: which event is its state, and when it earns or gives back points.

SPEC §2 rows "when an order earns" and "when points come back off", SPEC §3 (order events,
at least once and in any order), and the member view's ``total_spent`` (SPEC §4).

SPEC §3 asks that what an order finally adds to a balance does not depend on the order in
which its events arrive. Two rules make that so whatever the arrival order:

- an order earns once, ever, the first time an event shows it delivered and paid while it is
  not cancelled or returned (a late event that shows it delivered and paid still counts: had
  it arrived on time it would have earned, and nothing but a cancellation takes points back);
- ``cancelled`` and ``returned`` are final whenever they occurred: they take back what the
  order earned, and nothing after them changes the order.

So an order ends with its points if one of its events is delivered and paid and none is a
cancellation or return, and with nothing otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum, StrEnum

from loyalty.domain.events import (
    FINAL_STATUSES,
    EventRefused,
    FieldError,
    OrderEvent,
    OrderStatus,
    PaymentStatus,
)
from loyalty.domain.points import Posting, crosssell_bonus, order_credit, order_spend, reversal
from loyalty.program import Program, Tier

_STATUS_RANK = {status: rank for rank, status in enumerate(OrderStatus)}
_PAYMENT_RANK = {status: rank for rank, status in enumerate(PaymentStatus)}


@dataclass(frozen=True)
class OrderState:
    customer_id: str
    status: OrderStatus
    payment_status: PaymentStatus
    total_payable: int
    shipping_fee: int
    placed_at: datetime
    occurred_at: datetime
    earned: bool = False
    reversed: bool = False

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def spend(self) -> int:
        """What this order counts towards ``total_spent``: its spend once it earned, unless
        it was reversed."""
        if not self.earned or self.reversed:
            return 0
        return order_spend(self.total_payable, self.shipping_fee)


class Outcome(StrEnum):
    """What delivering one event did."""

    EARNED = "earned"
    REVERSED = "reversed"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


# Outcomes that leave a processed-event row; a duplicate only counts on that row.
APPLIED_OUTCOMES = (Outcome.EARNED, Outcome.REVERSED, Outcome.UPDATED, Outcome.UNCHANGED)


class PointsAction(Enum):
    NONE = "none"
    EARN = "earn"
    REVERSE = "reverse"


@dataclass(frozen=True)
class OrderChange:
    state: OrderState
    action: PointsAction


class CustomerMismatch(EventRefused):
    """An event names another customer than the one the order belongs to."""

    def __init__(self, order_id: str, owner: str, named: str):
        super().__init__([FieldError(
            field="customer.id",
            message=f"order {order_id} belongs to customer {owner}, not {named}")])


def _later(event: OrderEvent, state: OrderState) -> bool:
    # Ties on occurred_at are broken by how far along the lifecycle each one is, so the
    # state never depends on which of two simultaneous events came first.
    return (event.occurred_at, _STATUS_RANK[event.status], _PAYMENT_RANK[event.payment_status]) > \
        (state.occurred_at, _STATUS_RANK[state.status], _PAYMENT_RANK[state.payment_status])


def _state_of(event: OrderEvent, earned: bool = False, reversed_: bool = False) -> OrderState:
    return OrderState(
        customer_id=event.customer.id, status=event.status,
        payment_status=event.payment_status, total_payable=event.total_payable,
        shipping_fee=event.shipping_fee, placed_at=event.placed_at,
        occurred_at=event.occurred_at, earned=earned, reversed=reversed_)


def apply_order_event(current: OrderState | None, event: OrderEvent) -> OrderChange:
    """The order's next state and what happens to the customer's points."""
    if current is None:
        earns = event.earns
        return OrderChange(_state_of(event, earned=earns),
                           PointsAction.EARN if earns else PointsAction.NONE)
    if current.customer_id != event.customer.id:
        raise CustomerMismatch(event.order_id, current.customer_id, event.customer.id)
    if current.is_final:
        return OrderChange(current, PointsAction.NONE)
    if event.is_final:
        takes_back = current.earned
        return OrderChange(_state_of(event, earned=current.earned, reversed_=takes_back),
                           PointsAction.REVERSE if takes_back else PointsAction.NONE)
    earns = event.earns and not current.earned
    state = _state_of(event, earned=current.earned) if _later(event, current) else current
    if earns:
        return OrderChange(replace(state, earned=True), PointsAction.EARN)
    return OrderChange(state, PointsAction.NONE)


def postings_for(program: Program, change: OrderChange, event: OrderEvent, *, held: Tier,
                 order_rows: list[Posting], bonus_nudge: int | None) -> list[Posting]:
    """What the ledger gets for one change of an order.

    An order that earns is credited from the amounts of the event that earned, at the
    multiplier of ``held``, the tier held before this order is credited, plus the bonus of
    ``bonus_nudge`` when its window holds the order; a reversal takes back exactly the
    order's rows (``order_rows``).
    """
    if change.action is PointsAction.EARN:
        credit = order_credit(program, held, event.total_payable, event.shipping_fee)
        return [credit] if bonus_nudge is None else [credit, crosssell_bonus(program, bonus_nudge)]
    if change.action is PointsAction.REVERSE:
        return reversal(order_rows)
    return []
