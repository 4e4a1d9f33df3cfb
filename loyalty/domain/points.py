"""Points on the ledger, as SPEC §2 counts them.

SPEC §2 rows: "money per point", "points for an order", "when points come back off",
"cross-sell bonus" (not multiplied), "ledger". The rules return postings; the ledger
service (``loyalty.services.ledger.post``) is the only writer of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum

from loyalty.program import Program, Tier


class LedgerKind(StrEnum):
    ORDER_CREDIT = "order_credit"
    ORDER_REVERSAL = "order_reversal"
    CROSSSELL_BONUS = "crosssell_bonus"
    CROSSSELL_BONUS_REVERSAL = "crosssell_bonus_reversal"


# What takes back each kind a cancelled or returned order added.
REVERSAL_OF = {LedgerKind.ORDER_CREDIT: LedgerKind.ORDER_REVERSAL,
               LedgerKind.CROSSSELL_BONUS: LedgerKind.CROSSSELL_BONUS_REVERSAL}

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


def points_for_order(total_payable: int, shipping_fee: int, multiplier: Decimal,
                     money_per_point: int) -> int:
    """``floor((total_payable - shipping_fee) / money_per_point × multiplier)``, never below 0."""
    exact = Decimal(total_payable - shipping_fee) / Decimal(money_per_point) * multiplier
    return max(0, int(exact.to_integral_value(rounding=ROUND_FLOOR)))


def order_spend(total_payable: int, shipping_fee: int) -> int:
    """What an order counts towards ``total_spent`` (VND); shipping above the total counts 0."""
    return max(0, total_payable - shipping_fee)


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


def reversal(order_rows: Iterable[Posting]) -> list[Posting]:
    """Exactly what an order's rows added, negated (base and bonus), never a recomputation:
    each reversal is booked at the tier and multiplier of the row it takes back."""
    return [Posting(REVERSAL_OF[row.kind], -row.points, row.multiplier, row.tier, row.nudge_id)
            for row in order_rows if row.kind in REVERSAL_OF]


def bonus_taken_back(postings: Iterable[Posting]) -> int:
    """Bonus points a reversal takes back: the customer is told about those."""
    return -sum(p.points for p in postings if p.kind is LedgerKind.CROSSSELL_BONUS_REVERSAL)
