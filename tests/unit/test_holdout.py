"""The cross-sell holdout and the statistics of the campaign's results (pure, no I/O)."""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from loyalty.domain.campaign_results import GroupOutcome, uplift, windows_end
from loyalty.domain.holdout import Group, group_of, holdout_position, split
from loyalty.domain.proportions import newcombe_interval, wilson_interval
from loyalty.program import ProgramError, parse_program

DAY = date(2026, 11, 23)
PROGRAM = parse_program({})


# --- the holdout ----------------------------------------------------------------------

def test_the_assignment_is_the_same_every_time_and_depends_on_the_day() -> None:
    ids = [f"C-{n}" for n in range(2000)]
    first = split(ids, DAY, 10)
    assert split(reversed(ids), DAY, 10).held_out == tuple(reversed(first.held_out))
    assert [group_of(i, DAY, 10) for i in ids] == [group_of(i, DAY, 10) for i in ids]
    # Another day draws anew: a member is not held out for ever.
    next_day = set(split(ids, DAY + timedelta(days=1), 10).held_out)
    assert next_day != set(first.held_out) and next_day & set(first.held_out)


def test_ten_percent_of_10000_members_are_held_out() -> None:
    held = len(split((f"C-{n}" for n in range(10_000)), DAY, 10).held_out)
    # Binomial(10,000, 0.1): sd 30, so ±120 is four standard deviations.
    assert abs(held - 1000) <= 120, held


@pytest.mark.parametrize("percent", [0, 1, 25, 50, 99])
def test_the_share_held_out_follows_the_percentage(percent: int) -> None:
    ids = [f"{n:08d}" for n in range(10_000)]  # ids of another shape: a hash spreads them
    held = len(split(ids, DAY, percent).held_out)
    sd = math.sqrt(10_000 * percent / 100 * (1 - percent / 100))
    assert abs(held - 100 * percent) <= max(4 * sd, 0), (percent, held)


def test_positions_are_in_0_to_100_and_0_percent_holds_out_nobody() -> None:
    positions = [holdout_position(f"M{n}", DAY) for n in range(1000)]
    assert all(0 <= p < 100 for p in positions)
    assert all(group_of(f"M{n}", DAY, 0) is Group.NUDGED for n in range(1000))


def test_holdout_percent_is_validated() -> None:
    assert PROGRAM.crosssell.holdout_percent == 0
    assert parse_program({"crosssell": {"holdout_percent": 10}}).crosssell.holdout_percent == 10
    for bad in (-1, 100, 150):
        with pytest.raises(ProgramError, match=r"crosssell\.holdout_percent"):
            parse_program({"crosssell": {"holdout_percent": bad}})


# --- the intervals --------------------------------------------------------------------

# Newcombe (1998), Table II, method 10 (hybrid score, no continuity correction): the eight
# worked examples, as published to four decimals.
NEWCOMBE_TABLE_II = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
    ((10, 10, 0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("counts", "published"), NEWCOMBE_TABLE_II)
def test_newcombe_interval_matches_the_papers_worked_examples(
        counts: tuple[int, int, int, int], published: tuple[float, float]) -> None:
    low, high = newcombe_interval(*counts)
    assert (round(low, 4), round(high, 4)) == published


def test_the_spec_example_interval() -> None:
    low, high = newcombe_interval(120, 900, 8, 100)
    assert (round(low, 4), round(high, 4)) == (-0.0196, 0.0989)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 5000), st.data())
def test_newcombe_and_wilson_match_statsmodels(n1: int, n2: int, data: st.DataObject) -> None:
    k1, k2 = data.draw(st.integers(0, n1)), data.draw(st.integers(0, n2))
    ours = newcombe_interval(k1, n1, k2, n2)
    reference = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff")
    assert ours == pytest.approx(tuple(map(float, reference)), abs=1e-9)
    wilson = proportion_confint(k1, n1, method="wilson")
    assert wilson_interval(k1, n1) == pytest.approx(tuple(map(float, wilson)), abs=1e-9)


def test_the_interval_holds_its_95_percent_coverage() -> None:
    """A check of the method itself: over 2,000 simulated campaigns of 900 nudged and 100
    held out converting at 13 % and 8 %, the interval covers the true 5 points about 95 %
    of the time (Newcombe reports near-nominal coverage for method 10)."""
    rng = random.Random(12)
    covered = 0
    for _ in range(2000):
        k1 = sum(rng.random() < 0.13 for _ in range(900))
        k2 = sum(rng.random() < 0.08 for _ in range(100))
        low, high = newcombe_interval(k1, 900, k2, 100)
        covered += low <= 0.05 <= high
    assert 0.93 <= covered / 2000 <= 0.97, covered


# --- the uplift and the windows -------------------------------------------------------

def test_uplift_of_the_spec_example() -> None:
    nudged = GroupOutcome(members=900, converted=120, spend=98_000_000)
    held = GroupOutcome(members=100, converted=8, spend=6_100_000)
    assert uplift(nudged, held).to_json() == {
        "conversion": 0.0533, "ci95": [-0.0196, 0.0989],
        # 98,000,000 / 900 - 6,100,000 / 100 = 47,888.89, rounded half up
        "extra_spend_per_nudged": 47_889}


def test_no_uplift_while_a_group_is_empty() -> None:
    some = GroupOutcome(members=10, converted=2, spend=100)
    assert uplift(some, GroupOutcome()).to_json() == {
        "conversion": None, "ci95": None, "extra_spend_per_nudged": None}
    assert uplift(GroupOutcome(), some).conversion is None


def test_outcomes_add_up_with_their_messages() -> None:
    a = GroupOutcome(members=2, converted=1, spend=10, bonus_credited=100,
                     messages={"sent": 2})
    b = GroupOutcome(members=3, converted=1, spend=5, bonus_reversed=100,
                     messages={"sent": 1, "failed": 2})
    assert a + b == GroupOutcome(members=5, converted=2, spend=15, bonus_credited=100,
                                 bonus_reversed=100, messages={"sent": 3, "failed": 2})


def test_the_windows_of_a_scan_end_72_hours_and_a_tag_period_after_it() -> None:
    scan = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    assert windows_end(PROGRAM, scan) == (scan + timedelta(hours=72), scan + timedelta(days=15))
    shorter = parse_program({"crosssell": {"bonus_window_hours": 48, "tag_days": 7}})
    assert windows_end(shorter, scan) == (scan + timedelta(hours=48), scan + timedelta(days=7))
