"""Confidence intervals for proportions and their difference (SPEC §4 "Campaign results":
``ci95`` is Newcombe's hybrid score interval). No I/O.

Newcombe, R. G. (1998). Interval estimation for the difference between independent
proportions: comparison of eleven methods. Statistics in Medicine 17, 873-890. Method 10
combines the Wilson score interval of each proportion (method 3 of its companion paper on
single proportions); it needs no iteration, stays inside [-1, 1] and behaves well with small
groups and with proportions near 0 or 1, which is what a holdout of 10 % gives.
"""

from __future__ import annotations

import math
from statistics import NormalDist


def z_for(confidence: float) -> float:
    """The two-sided standard normal quantile, 1.959964 for 95 %."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95
                    ) -> tuple[float, float]:
    """The Wilson score interval (no continuity correction) of ``successes / trials``."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials > 0, "
                         f"got {successes}/{trials}")
    z = z_for(confidence)
    p = successes / trials
    centre = 2 * trials * p + z * z
    spread = z * math.sqrt(z * z + 4 * trials * p * (1 - p))
    denominator = 2 * (trials + z * z)
    # At 0 and at 1 the formula gives exactly 0 and 1, up to rounding.
    lower = 0.0 if successes == 0 else (centre - spread) / denominator
    upper = 1.0 if successes == trials else (centre + spread) / denominator
    return lower, upper


def newcombe_interval(successes1: int, trials1: int, successes2: int, trials2: int,
                      confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) for ``p1 - p2``."""
    p1, p2 = successes1 / trials1, successes2 / trials2
    l1, u1 = wilson_interval(successes1, trials1, confidence)
    l2, u2 = wilson_interval(successes2, trials2, confidence)
    difference = p1 - p2
    lower = difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return lower, upper
