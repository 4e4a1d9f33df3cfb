"""Points on the ledger, as SPEC §2 counts them.

SPEC §2 rows: "money per point", "points for an order", "when points come back off",
"refund", "cross-sell bonus" (not multiplied), "ledger", and what an order counts towards
``total_spent`` (SPEC §4). The rules return postings; the ledger service
(``loyalty.services.ledger.post``) is the only writer of them.

What an order's points and spend are measured on is its earning amount,
``total_payable - shipping_fee`` of the event that earned (never below 0): the credit, the
share a partial refund takes back and ``total_spent`` all use that one amount, whatever
amounts later events of the order carry.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum

from loyalty.program import Program, Tier


class LedgerKind(StrEnum):
    ORDER_CREDIT = "order_credit"
    ORDER_REVERSAL = "order_reversal"
    ORDER_REFUND = "order_refund"
    CROSSSELL_BONUS = "crosssell_bonus"
    CROSSSELL_BONUS_REVERSAL = "crosssell_bonus_reversal"

NOT_MULTIPLIED = Decimal("1")


@dataclass(frozen=True)
class Posting:
    """One row for the ledger: how many points, why, and at which tier and multiplier."""

    kind: LedgerKind
    points: int
    multiplier: Decimal
    # The tier the row is booked at; None: the tier the member holds when it is posted.
    tier: str | None = None
    nudge_id: int | None = None
    # An ``order_refund`` row: the cumulative refunded amount (VND) it brings the order to.
    refunded_to: int | None = None


def points_for_order(total_payable: int, shipping_fee: int, multiplier: Decimal,
                     money_per_point: int) -> int:
    """``floor((total_payable - shipping_fee) / money_per_point × multiplier)``, never below 0."""
    exact = Decimal(total_payable - shipping_fee) / Decimal(money_per_point) * multiplier
    return max(0, int(exact.to_integral_value(rounding=ROUND_FLOOR)))


def earning_amount(total_payable: int, shipping_fee: int) -> int:
    """``total_payable - shipping_fee`` (VND); shipping above the total counts 0."""
    return max(0, total_payable - shipping_fee)


def order_spend(earning: int, refunded: int) -> int:
    """What an order that earned counts towards ``total_spent``: what the member kept,
    its earning amount less what was refunded, never below 0."""
    return max(0, earning - refunded)


def is_full_refund(earning: int, refunded: int, refunded_status: bool) -> bool:
    """An order is fully refunded when an event said ``payment_status: refunded``, or when
    the refunded amount reaches its earning amount."""
    return refunded_status or (refunded > 0 and refunded >= earning)


def order_credit(program: Program, held: Tier, total_payable: int,
                 shipping_fee: int) -> Posting:
    """The points an order earns, at the multiplier of ``held``: the tier the member holds
    before this order is credited."""
    points = points_for_order(total_payable, shipping_fee, held.multiplier,
                              program.money_per_point)
    return Posting(LedgerKind.ORDER_CREDIT, points, held.multiplier)


def crosssell_bonus(program: Program, nudge_id: int) -> Posting:
    """The cross-sell bonus: the same for every tier, so not multiplied."""
    return Posting(LedgerKind.CROSSSELL_BONUS, program.crosssell.bonus_points, NOT_MULTIPLIED,
                   nudge_id=nudge_id)


def _base_taken_back(order_rows: Sequence[Posting]) -> int:
    return -sum(row.points for row in order_rows if row.kind is LedgerKind.ORDER_REFUND)


def _take_back_the_rest(order_rows: Sequence[Posting], base_kind: LedgerKind,
                        refunded_to: int | None = None) -> list[Posting]:
    """What an order's rows still hold, negated: the base credit net of what partial refunds
    already took back, and any bonus. Never a recomputation: each row is booked at the tier
    and multiplier of the row it takes back."""
    taken = _base_taken_back(order_rows)
    rows = []
    for row in order_rows:
        if row.kind is LedgerKind.ORDER_CREDIT:
            rows.append(Posting(base_kind, -(row.points - taken), row.multiplier, row.tier,
                                refunded_to=refunded_to))
        elif row.kind is LedgerKind.CROSSSELL_BONUS:
            rows.append(Posting(LedgerKind.CROSSSELL_BONUS_REVERSAL, -row.points,
                                row.multiplier, row.tier, row.nudge_id))
    return rows


def reversal(order_rows: Sequence[Posting]) -> list[Posting]:
    """SPEC §2 "when points come back off": a cancelled or returned order that earned gives
    back exactly what its rows added, base and bonus, net of partial refunds."""
    return _take_back_the_rest(order_rows, LedgerKind.ORDER_REVERSAL)


def refund(order_rows: Sequence[Posting], earning: int, refunded: int,
           refunded_status: bool) -> list[Posting]:
    """SPEC §2 "refund", for an order that earned, given its rows so far.

    A full refund (``is_full_refund``) takes back the rest, base and bonus, as a
    cancellation does. A partial one takes back ``floor(credited_base × refunded / earning)``
    of the base in all; only the difference from what earlier refunds took back is posted
    (nothing when a smaller or equal amount comes late), and the bonus stays.
    """
    credits = [row for row in order_rows if row.kind is LedgerKind.ORDER_CREDIT]
    if not credits:
        return []
    if is_full_refund(earning, refunded, refunded_status):
        return _take_back_the_rest(order_rows, LedgerKind.ORDER_REFUND, refunded_to=earning)
    [credit] = credits
    if refunded <= 0:
        return []
    due = credit.points * refunded // earning  # integers: exact, and floored
    more = due - _base_taken_back(order_rows)
    if more <= 0:
        return []
    return [Posting(LedgerKind.ORDER_REFUND, -more, credit.multiplier, credit.tier,
                    refunded_to=refunded)]


def bonus_taken_back(postings: Iterable[Posting]) -> int:
    """Bonus points a reversal takes back: the customer is told about those."""
    return -sum(p.points for p in postings if p.kind is LedgerKind.CROSSSELL_BONUS_REVERSAL)
