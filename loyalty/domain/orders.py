"""One order's lifecycle: which event is its state, and when it earns or gives back points.

SPEC §2 rows "when an order earns", "when points come back off" and "refund", SPEC §3 (order
events, at least once and in any order), and the member view's ``total_spent`` (SPEC §4).

SPEC §3 asks that what an order finally adds to a balance does not depend on the order in
which its events arrive. These rules make that so whatever the arrival order:

- an order earns once, ever, the first time an event shows it delivered and paid while it is
  not cancelled, returned or refunded in full (a late event that shows it delivered and paid
  still counts: had it arrived on time it would have earned, and nothing but a cancellation
  or a refund takes points back);
- ``cancelled`` and ``returned`` are final whenever they occurred: they take back what the
  order still holds, and nothing after them changes the order;
- refunds are facts that only grow, whenever they occurred: the largest ``refunded_amount``
  any event carried, and whether any event said ``payment_status: refunded``. A refund that
  arrives before the order earned is applied when it earns (an order known to be refunded in
  full never earns); one that arrives after takes back the difference. A full refund, like a
  cancellation, ends the order's points.

So an order ends with nothing if one of its events is a cancellation, a return or a full
refund, or if none is delivered and paid; otherwise with its credit less
``floor(credit × largest refunded_amount / earning amount)``, plus its bonus.

An order's amounts are those of the event that earned: its earning amount
(``points.earning_amount``) is fixed then and is what the refund share and ``total_spent``
are measured on. A later event with other amounts updates the order's latest state but not
what it earned.
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
from loyalty.domain.points import (
    Posting,
    crosssell_bonus,
    earning_amount,
    is_full_refund,
    order_credit,
    order_spend,
    refund,
    reversal,
)
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
    # Its points were all taken back: cancelled, returned or refunded in full.
    reversed: bool = False
    # The earning amount of the event that earned; None until the order earns.
    earning: int | None = None
    # The largest refunded_amount seen (VND), and whether any event said it was refunded.
    refunded: int = 0
    refunded_status: bool = False

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def spend(self) -> int:
        """What this order counts towards ``total_spent``: once it earned and unless it was
        reversed, what the member kept of its earning amount."""
        if not self.earned or self.reversed or self.earning is None:
            return 0
        return order_spend(self.earning, self.refunded)


class Outcome(StrEnum):
    """What delivering one event did."""

    EARNED = "earned"
    REVERSED = "reversed"
    REFUNDED = "refunded"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


# Outcomes that leave a processed-event row; a duplicate only counts on that row.
APPLIED_OUTCOMES = (Outcome.EARNED, Outcome.REVERSED, Outcome.REFUNDED, Outcome.UPDATED,
                    Outcome.UNCHANGED)


class PointsAction(Enum):
    EARN = "earn"
    # Cancelled or returned: take back the rest (``points.reversal``).
    REVERSE = "reverse"
    # A refund grew: take back its share, or the rest when it is full (``points.refund``).
    REFUND = "refund"


@dataclass(frozen=True)
class OrderChange:
    state: OrderState
    # What happens to the member's points, in this order (an event can earn and carry a
    # partial refund at once); empty: nothing.
    actions: tuple[PointsAction, ...] = ()


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


def _state_of(event: OrderEvent, known: OrderState | None) -> OrderState:
    """The event as the order's latest state, with what is known of the order whatever the
    time of the event: whether it earned, its earning amount, and the refunds seen."""
    state = OrderState(
        customer_id=event.customer.id, status=event.status,
        payment_status=event.payment_status, total_payable=event.total_payable,
        shipping_fee=event.shipping_fee, placed_at=event.placed_at,
        occurred_at=event.occurred_at)
    if known is None:
        return state
    return replace(state, earned=known.earned, reversed=known.reversed, earning=known.earning,
                   refunded=known.refunded, refunded_status=known.refunded_status)


def apply_order_event(current: OrderState | None, event: OrderEvent) -> OrderChange:
    """The order's next state and what happens to the customer's points."""
    if current is not None:
        if current.customer_id != event.customer.id:
            raise CustomerMismatch(event.order_id, current.customer_id, event.customer.id)
        if current.is_final:
            return OrderChange(current)
    replaces = current is None or event.is_final or _later(event, current)
    state = _state_of(event, current) if replaces else current
    assert state is not None
    state = replace(state, refunded=max(state.refunded, event.refunded_amount or 0),
                    refunded_status=state.refunded_status
                    or event.payment_status is PaymentStatus.REFUNDED)
    if event.is_final:
        if state.earned and not state.reversed:
            return OrderChange(replace(state, reversed=True), (PointsAction.REVERSE,))
        return OrderChange(state)
    if state.reversed:  # refunded in full: nothing changes its points any more
        return OrderChange(state)

    actions: list[PointsAction] = []
    if event.earns and not state.earned:
        earning = earning_amount(event.total_payable, event.shipping_fee)
        if is_full_refund(earning, state.refunded, state.refunded_status):
            return OrderChange(state)  # refunded in full before it could earn: never earns
        state = replace(state, earned=True, earning=earning)
        actions.append(PointsAction.EARN)
    # What the points already reflect: nothing of the refunds when the order earns now.
    reflected = 0 if actions or current is None else current.refunded
    refund_grew = state.refunded > reflected or (
        state.refunded_status and not (current is not None and current.refunded_status))
    if state.earned and refund_grew:
        assert state.earning is not None
        if is_full_refund(state.earning, state.refunded, state.refunded_status):
            state = replace(state, reversed=True)
        actions.append(PointsAction.REFUND)
    return OrderChange(state, tuple(actions))


def postings_for(program: Program, action: PointsAction, state: OrderState,
                 event: OrderEvent, *, held: Tier, order_rows: list[Posting],
                 bonus_nudge: int | None) -> list[Posting]:
    """What the ledger gets for one points action of an order's change.

    An order that earns is credited from the amounts of the event that earned, at the
    multiplier of ``held``, the tier held before this order is credited, plus the bonus of
    ``bonus_nudge`` when its window holds the order. A reversal or a refund reads the
    order's rows as they are now (``order_rows``, the credit of this very event included).
    """
    if action is PointsAction.EARN:
        credit = order_credit(program, held, event.total_payable, event.shipping_fee)
        return [credit] if bonus_nudge is None else [credit, crosssell_bonus(program, bonus_nudge)]
    if action is PointsAction.REVERSE:
        return reversal(order_rows)
    assert state.earning is not None  # the domain refunds only an order that earned
    return refund(order_rows, state.earning, state.refunded, state.refunded_status)


def outcome_of(change: OrderChange, before: OrderState | None) -> Outcome:
    """What an event that was applied did, for logs and ops."""
    if PointsAction.EARN in change.actions:
        return Outcome.EARNED
    if PointsAction.REVERSE in change.actions:
        return Outcome.REVERSED
    if change.actions:
        return Outcome.REFUNDED
    return Outcome.UNCHANGED if change.state == before else Outcome.UPDATED
