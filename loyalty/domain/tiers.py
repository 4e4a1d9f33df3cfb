"""Tiers and points: the arithmetic of SPEC §2, with no I/O."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from loyalty.program import Program, Tier


def points_for_order(total_payable: int, shipping_fee: int, multiplier: Decimal,
                     money_per_point: int) -> int:
    """``floor((total_payable - shipping_fee) / money_per_point × multiplier)``, never below 0."""
    exact = Decimal(total_payable - shipping_fee) / Decimal(money_per_point) * multiplier
    return max(0, int(exact.to_integral_value(rounding=ROUND_FLOOR)))


def order_spend(total_payable: int, shipping_fee: int) -> int:
    """What an order counts towards ``total_spent`` (VND); shipping above the total counts 0."""
    return max(0, total_payable - shipping_fee)


def tier_for_points(program: Program, points: int) -> Tier:
    """The highest tier whose threshold is at most ``points``."""
    reached = [tier for tier in program.tiers if tier.threshold <= points]
    return reached[-1] if reached else program.tiers[0]


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


def is_near_next_tier(program: Program, points: int) -> bool:
    """``0 < points_to_next_tier < near_tier_points``; never for the top tier."""
    missing = points_to_next_tier(program, points)
    return missing is not None and 0 < missing < program.crosssell.near_tier_points


def near_tier_ranges(program: Program) -> list[tuple[int, int]]:
    """Point ranges ``[low, high)`` whose members are near the next tier.

    Being near means the smallest threshold above one's points is less than the gap away, so
    the set is the union of ``(threshold - gap, threshold)`` over the thresholds above 0. The
    daily scan turns these ranges into an indexed SQL condition.
    """
    gap = program.crosssell.near_tier_points
    return [(max(0, tier.threshold - gap + 1), tier.threshold)
            for tier in program.tiers if tier.threshold > 0]
