"""The domain's rules one by one, with no database: each predicate and the bounds storage
selects by say the same thing."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty.domain.birthdays import birthdays_celebrated_on, is_birthday, may_receive_gift
from loyalty.domain.crosssell import bonus_window_for_order, earns_bonus
from loyalty.domain.events import parse_event
from loyalty.domain.messages import next_morning, next_quota_day
from loyalty.domain.orders import PointsAction, apply_order_event
from loyalty.domain.points import (
    LedgerKind,
    Posting,
    bonus_taken_back,
    crosssell_bonus,
    order_credit,
    refund,
    reversal,
)
from loyalty.domain.tiers import (
    is_near_next_tier,
    move_direction,
    near_tier_ranges,
    new_member_tier,
    points_to_next_tier,
    tier_floors,
    tier_for_points,
)
from loyalty.program import Program, parse_program
from tests.support.events import order_event

PROGRAM = Program()
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")


def test_an_order_is_credited_at_the_multiplier_of_the_tier_held_before_it() -> None:
    credit = order_credit(PROGRAM, PROGRAM.tier("silver"), 1_250_000, 30_000)
    assert credit == Posting(LedgerKind.ORDER_CREDIT, 1464, Decimal("1.2"))


def test_the_bonus_is_not_multiplied_and_names_its_nudge() -> None:
    assert crosssell_bonus(PROGRAM, nudge_id=7) == Posting(
        LedgerKind.CROSSSELL_BONUS, 100, Decimal("1"), nudge_id=7)


def test_a_reversal_is_the_exact_negation_of_the_orders_rows() -> None:
    rows = [Posting(LedgerKind.ORDER_CREDIT, 1464, Decimal("1.2"), "silver"),
            Posting(LedgerKind.CROSSSELL_BONUS, 100, Decimal("1"), "silver", nudge_id=7)]
    taken = reversal(rows)
    assert taken == [
        Posting(LedgerKind.ORDER_REVERSAL, -1464, Decimal("1.2"), "silver"),
        Posting(LedgerKind.CROSSSELL_BONUS_REVERSAL, -100, Decimal("1"), "silver", nudge_id=7)]
    assert bonus_taken_back(taken) == 100
    assert reversal(taken) == []  # reversals themselves are never taken back


CREDIT = Posting(LedgerKind.ORDER_CREDIT, 1464, Decimal("1.2"), "silver")
BONUS = Posting(LedgerKind.CROSSSELL_BONUS, 100, Decimal("1"), "silver", nudge_id=7)


def test_a_partial_refund_takes_back_its_floored_share_less_what_earlier_steps_took() -> None:
    # floor(1464 × 400,000 / 1,220,000) = 480; the bonus stays.
    [first] = refund([CREDIT, BONUS], 1_220_000, 400_000, False)
    assert first == Posting(LedgerKind.ORDER_REFUND, -480, Decimal("1.2"), "silver",
                            refunded_to=400_000)
    # floor(1464 × 1,000,000 / 1,220,000) = 1200 in all: 720 more.
    [second] = refund([CREDIT, BONUS, first], 1_220_000, 1_000_000, False)
    assert (second.points, second.refunded_to) == (-720, 1_000_000)
    # The same amount again, or a smaller one, takes nothing.
    assert refund([CREDIT, BONUS, first, second], 1_220_000, 1_000_000, False) == []
    assert refund([CREDIT, BONUS, first, second], 1_220_000, 400_000, False) == []
    # An order that never earned has nothing to give back.
    assert refund([], 1_220_000, 400_000, True) == []


def test_a_full_refund_and_a_cancellation_take_back_the_rest_base_and_bonus() -> None:
    step = Posting(LedgerKind.ORDER_REFUND, -480, Decimal("1.2"), "silver", refunded_to=400_000)
    full = refund([CREDIT, BONUS, step], 1_220_000, 400_000, True)
    assert full == [
        Posting(LedgerKind.ORDER_REFUND, -984, Decimal("1.2"), "silver", refunded_to=1_220_000),
        Posting(LedgerKind.CROSSSELL_BONUS_REVERSAL, -100, Decimal("1"), "silver", nudge_id=7)]
    assert refund([CREDIT, BONUS, step], 1_220_000, 1_220_000, False) == full
    assert [p.points for p in reversal([CREDIT, BONUS, step])] == [-984, -100]
    assert bonus_taken_back(full) == 100


def test_an_order_that_earns_with_a_refund_known_earns_and_refunds_at_once() -> None:
    shipped = apply_order_event(None, parse_event({
        **order_event("SO-1", "C-1", "shipping", "paid", at=0), "refunded_amount": 610_000}))
    assert shipped.actions == () and shipped.state.refunded == 610_000
    earned = apply_order_event(shipped.state, parse_event(order_event("SO-1", "C-1", at=1)))
    assert earned.actions == (PointsAction.EARN, PointsAction.REFUND)
    assert (earned.state.earning, earned.state.spend) == (1_220_000, 610_000)
    refunded = apply_order_event(earned.state, parse_event(order_event(
        "SO-1", "C-1", "delivered", "refunded", at=2)))
    assert refunded.actions == (PointsAction.REFUND,)
    assert refunded.state.reversed and refunded.state.spend == 0


@given(gaps=st.lists(st.integers(1, 2_000), min_size=1, max_size=4),
       points=st.integers(0, 10_000))
def test_tier_floors_are_the_same_rule_as_tier_for_points(gaps: list[int],
                                                           points: int) -> None:
    thresholds = [0]
    for gap in gaps:
        thresholds.append(thresholds[-1] + gap)
    program = parse_program({"tiers": [
        {"code": f"t{n}", "name": f"T{n}", "name_vi": f"T{n}", "threshold": t, "multiplier": 1}
        for n, t in enumerate(thresholds)]})
    floors = tier_floors(program)
    held = next((code for floor, code in floors if points >= floor), floors[-1][1])
    assert held == tier_for_points(program, points).code


def test_a_move_at_a_program_change_is_up_down_or_neither_by_threshold() -> None:
    renamed = parse_program({"tiers": [
        {"code": "member", "name": "M", "name_vi": "M", "threshold": 0, "multiplier": 1},
        {"code": "bronze", "name": "B", "name_vi": "B", "threshold": 500, "multiplier": 1},
        {"code": "argent", "name": "A", "name_vi": "A", "threshold": 1000, "multiplier": 1}]})
    assert move_direction(PROGRAM, renamed, "member", "bronze") == 1  # 0 → 500
    assert move_direction(PROGRAM, renamed, "gold", "argent") == -1  # 2000 → 1000
    assert move_direction(PROGRAM, renamed, "silver", "argent") == 0  # 1000 → 1000
    assert move_direction(renamed, PROGRAM, "argent", "gold") == 1


def test_a_new_member_starts_at_the_first_tier() -> None:
    assert new_member_tier(PROGRAM).code == "member"


@given(gaps=st.lists(st.integers(1, 2_000), min_size=1, max_size=4),
       near=st.integers(1, 3_000), points=st.integers(0, 10_000))
def test_near_the_next_tier_is_the_same_rule_as_its_ranges(gaps: list[int], near: int,
                                                           points: int) -> None:
    thresholds = [0]
    for gap in gaps:
        thresholds.append(thresholds[-1] + gap)
    program = parse_program({
        "tiers": [{"code": f"t{n}", "name": f"T{n}", "name_vi": f"T{n}", "threshold": t,
                   "multiplier": 1} for n, t in enumerate(thresholds)],
        "crosssell": {"near_tier_points": near}})
    missing = points_to_next_tier(program, points)
    assert is_near_next_tier(program, points) == (missing is not None and 0 < missing < near)
    assert is_near_next_tier(program, points) == any(
        low <= points < high for low, high in near_tier_ranges(program))


@pytest.mark.parametrize(("hours_after_nudge", "earns"), [
    (-0.01, False), (0, True), (71.99, True), (72, True), (72.01, False)])
def test_the_bonus_window_is_72_hours_from_the_send(hours_after_nudge: float,
                                                    earns: bool) -> None:
    sent = datetime(2026, 11, 23, 9, tzinfo=ZONE)
    placed = sent + timedelta(hours=hours_after_nudge)
    assert earns_bonus(PROGRAM, sent, placed) is earns
    earliest, latest = bonus_window_for_order(PROGRAM, placed)
    assert (earliest <= sent <= latest) is earns


@pytest.mark.parametrize(("day", "celebrated"), [
    (date(2027, 2, 28), [(2, 28), (2, 29)]),  # not a leap year
    (date(2028, 2, 28), [(2, 28)]),
    (date(2028, 2, 29), [(2, 29)]),
    (date(2027, 3, 1), [(3, 1)])])
def test_29_february_is_celebrated_on_28_february_in_other_years(
        day: date, celebrated: list[tuple[int, int]]) -> None:
    assert birthdays_celebrated_on(day) == celebrated
    assert is_birthday(date(1996, 2, 29), day) is ((2, 29) in celebrated)


def test_at_most_one_gift_in_365_days() -> None:
    now = datetime(2027, 3, 1, 8, tzinfo=ZONE)
    assert may_receive_gift(PROGRAM, None, now)
    assert not may_receive_gift(PROGRAM, now - timedelta(days=364), now)
    assert may_receive_gift(PROGRAM, now - timedelta(days=365), now)


def test_held_messages_wait_for_morning_or_for_the_next_quota_day() -> None:
    night = datetime(2026, 11, 23, 23, 30, tzinfo=ZONE)
    assert next_morning(night, ZONE) == datetime(2026, 11, 24, 8, tzinfo=ZONE)
    early = datetime(2026, 11, 24, 6, 30, tzinfo=ZONE)
    assert next_morning(early, ZONE) == datetime(2026, 11, 24, 8, tzinfo=ZONE)
    afternoon = datetime(2026, 11, 23, 14, tzinfo=ZONE)
    assert next_quota_day(afternoon, ZONE) == datetime(2026, 11, 24, 0, 5, tzinfo=ZONE)


def test_an_events_digest_ignores_spelling_but_not_content() -> None:
    event = order_event("SO-1", "C-1", event_id="evt-1")
    respelled = dict(reversed(list(event.items())))
    respelled["placed_at"] = "2026-11-20T03:00:00+00:00"  # the same instant as 10:00 +07:00
    assert parse_event(respelled).digest == parse_event(event).digest
    assert parse_event(dict(event, total_payable=1)).digest != parse_event(event).digest


def test_an_order_counts_its_spend_once_earned_and_never_once_reversed() -> None:
    placed = apply_order_event(None, parse_event(order_event("SO-1", "C-1", "pending",
                                                             "unpaid", at=0))).state
    assert placed.spend == 0
    earned = apply_order_event(placed, parse_event(order_event("SO-1", "C-1", at=1))).state
    assert earned.spend == 1_220_000
    cancelled = apply_order_event(earned, parse_event(order_event(
        "SO-1", "C-1", "cancelled", "refunded", at=2))).state
    assert cancelled.spend == 0
    free_shipping_loss = apply_order_event(None, parse_event(order_event(
        "SO-2", "C-1", total=10_000, shipping=30_000))).state
    assert free_shipping_loss.spend == 0
