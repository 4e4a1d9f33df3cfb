"""Tiers: SPEC §2 rows "tier", "new customer", "near the next tier", and the member view's
progress (``points_to_next_tier``, ``spend_to_next_tier``). No I/O."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from loyalty.program import Program, Tier


def new_member_tier(program: Program) -> Tier:
    """A new customer starts at the first tier, with 0 points."""
    return program.tiers[0]


def tier_for_points(program: Program, points: int) -> Tier:
    """The highest tier whose threshold is at most ``points``."""
    reached = [tier for tier in program.tiers if tier.threshold <= points]
    return reached[-1] if reached else new_member_tier(program)


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
