"""Tiers: SPEC §2 rows "tier", "new customer", "near the next tier", "program change" (every
member's tier under new thresholds), and the member view's progress
(``points_to_next_tier``, ``spend_to_next_tier``). No I/O."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from enum import StrEnum

from loyalty.program import Program, Tier


class TierChangeReason(StrEnum):
    """Why a member moved, as the tier history records it."""

    POINTS = "points"  # a ledger row moved their balance across a threshold
    PROGRAM_CHANGE = "program change"  # new thresholds were put in force


def new_member_tier(program: Program) -> Tier:
    """A new customer starts at the first tier, with 0 points."""
    return program.tiers[0]


def tier_for_points(program: Program, points: int) -> Tier:
    """The highest tier whose threshold is at most ``points``."""
    reached = [tier for tier in program.tiers if tier.threshold <= points]
    return reached[-1] if reached else new_member_tier(program)


def tier_floors(program: Program) -> list[tuple[int, str]]:
    """``(threshold, code)`` from the top tier down: a member holds the first tier whose
    threshold their points reach (the first tier when none is), as ``tier_for_points``
    says. The bounds a set-based re-evaluation of every member turns into SQL."""
    return [(tier.threshold, tier.code) for tier in reversed(program.tiers)]


def move_direction(before: Program, after: Program, from_code: str, to_code: str) -> int:
    """A move at a program change: 1 up, -1 down, 0 neither (a tier renamed, say). Up when
    the new tier's threshold, in the new program, is above the old tier's in the old one;
    a tier the old program lacks counts as below every threshold."""
    def threshold(program: Program, code: str) -> int:
        return next((tier.threshold for tier in program.tiers if tier.code == code), -1)
    new, old = threshold(after, to_code), threshold(before, from_code)
    return (new > old) - (new < old)


def next_tier(program: Program, tier: Tier) -> Tier | None:
    above = [other for other in program.tiers if other.threshold > tier.threshold]
    return above[0] if above else None


def points_to_next_tier(program: Program, points: int) -> int | None:
    upper = next_tier(program, tier_for_points(program, points))
    return None if upper is None else upper.threshold - points


def spend_to_next_tier(program: Program, points: int) -> int | None:
    """VND still to spend at the current tier's multiplier to reach the next tier, rounded up."""
    missing = points_to_next_tier(program, points)
    if missing is None:
        return None
    multiplier = tier_for_points(program, points).multiplier
    exact = Decimal(missing) * Decimal(program.money_per_point) / multiplier
    return int(exact.to_integral_value(rounding=ROUND_CEILING))


def near_tier_ranges(program: Program) -> list[tuple[int, int]]:
    """Point ranges ``[low, high)`` whose members are near the next tier: the bounds the
    daily scan turns into an indexed SQL condition.

    Near means ``0 < points_to_next_tier < near_tier_points`` (never for the top tier): the
    smallest threshold above one's points is less than the gap away, so the set is the union
    of ``(threshold - gap, threshold)`` over the thresholds above 0.
    """
    gap = program.crosssell.near_tier_points
    return [(max(0, tier.threshold - gap + 1), tier.threshold)
            for tier in program.tiers if tier.threshold > 0]


def is_near_next_tier(program: Program, points: int) -> bool:
    return any(low <= points < high for low, high in near_tier_ranges(program))
