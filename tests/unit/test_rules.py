"""SPEC §2 as worked examples on the pure rules (no I/O)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from loyalty.domain.events import InvalidEvent, parse_event
from loyalty.domain.orders import CustomerMismatch, OrderChange, PointsAction, apply_order_event
from loyalty.domain.points import points_for_order
from loyalty.domain.tiers import (
    is_near_next_tier,
    near_tier_ranges,
    points_to_next_tier,
    spend_to_next_tier,
    tier_for_points,
)
from loyalty.program import Program
from tests.support.events import order_event

PROGRAM = Program()


@pytest.mark.parametrize(("multiplier", "expected"), [
    ("1.0", 1220), ("1.2", 1464), ("1.3", 1586), ("1.5", 1830)])
def test_seed_formula_with_each_tier_multiplier(multiplier: str, expected: int) -> None:
    # (1,250,000 - 30,000) / 1000 × multiplier, floored
    assert points_for_order(1_250_000, 30_000, Decimal(multiplier), 1000) == expected


def test_points_are_floored_with_exact_decimals() -> None:
    assert points_for_order(1_999, 0, Decimal("1.0"), 1000) == 1
    # 1.3 × 1,001 = 1,301.3 in exact decimals; binary floats would give 1301.29999…
    assert points_for_order(1_001_000, 0, Decimal("1.3"), 1000) == 1301
    # 0.7 × 1.2 = 0.84 → 0
    assert points_for_order(700, 0, Decimal("1.2"), 1000) == 0
    # a float would turn 3 × 1.1 into 3.3000000000000003; exact is 3.3 → 3
    assert points_for_order(3_000, 0, Decimal("1.1"), 1000) == 3


def test_shipping_above_the_total_earns_nothing_never_negative() -> None:
    assert points_for_order(20_000, 30_000, Decimal("1.5"), 1000) == 0


@pytest.mark.parametrize(("points", "tier"), [
    (0, "member"), (999, "member"), (1000, "silver"), (1999, "silver"), (2000, "gold"),
    (2999, "gold"), (3000, "diamond"), (10**9, "diamond")])
def test_tier_is_highest_threshold_reached(points: int, tier: str) -> None:
    assert tier_for_points(PROGRAM, points).code == tier


def test_progress_to_next_tier_as_in_the_spec_example() -> None:
    assert points_to_next_tier(PROGRAM, 1720) == 280
    assert spend_to_next_tier(PROGRAM, 1720) == 233_334  # 280 / 1.2 × 1000, rounded up
    assert points_to_next_tier(PROGRAM, 3000) is None
    assert spend_to_next_tier(PROGRAM, 3500) is None


@pytest.mark.parametrize(("points", "near"), [
    (0, False), (700, False), (701, True), (999, True), (1000, False), (1701, True),
    (1700, False), (2999, True), (3000, False), (5000, False)])
def test_near_next_tier_edges(points: int, near: bool) -> None:
    assert is_near_next_tier(PROGRAM, points) is near
    in_ranges = any(low <= points < high for low, high in near_tier_ranges(PROGRAM))
    assert in_ranges is near


def _apply(*raw: dict) -> list[OrderChange]:
    state = None
    changes = []
    for event in raw:
        change = apply_order_event(state, parse_event(event))
        state = change.state
        changes.append(change)
    return changes


def test_order_earns_once_when_delivered_and_paid() -> None:
    changes = _apply(order_event("O", "C", "pending", "unpaid", at=0),
                     order_event("O", "C", "delivered", "unpaid", at=1),
                     order_event("O", "C", "delivered", "paid", at=2),
                     order_event("O", "C", "delivered", "paid", at=3))
    assert [c.action for c in changes] == [
        PointsAction.NONE, PointsAction.NONE, PointsAction.EARN, PointsAction.NONE]


def test_cancellation_takes_back_only_what_was_earned_and_is_final() -> None:
    changes = _apply(order_event("O", "C", "delivered", "paid", at=2),
                     order_event("O", "C", "cancelled", "refunded", at=3),
                     order_event("O", "C", "delivered", "paid", at=4))
    assert [c.action for c in changes] == [
        PointsAction.EARN, PointsAction.REVERSE, PointsAction.NONE]
    assert changes[-1].state.status == "cancelled"

    never_earned = _apply(order_event("O", "C", "pending", "unpaid", at=0),
                          order_event("O", "C", "returned", "refunded", at=1))
    assert never_earned[-1].action is PointsAction.NONE


def test_stale_event_does_not_replace_the_latest_state() -> None:
    changes = _apply(order_event("O", "C", "shipping", "paid", at=5),
                     order_event("O", "C", "pending", "unpaid", at=1))
    assert changes[-1].state.status == "shipping"


def test_cancellation_that_arrives_late_still_wins() -> None:
    # cancelled occurred before a (bogus) later delivered event, but arrived after it
    changes = _apply(order_event("O", "C", "delivered", "paid", at=9),
                     order_event("O", "C", "cancelled", "refunded", at=3))
    assert changes[-1].action is PointsAction.REVERSE


def test_an_event_naming_another_customer_is_refused() -> None:
    with pytest.raises(CustomerMismatch) as refused:
        _apply(order_event("O", "C1", at=0), order_event("O", "C2", at=1))
    assert refused.value.errors[0].field == "customer.id"


@pytest.mark.parametrize(("change", "message"), [
    ({"order_id": "SO-\x00"}, "must not contain a control character U+0000 at position 3"),
    ({"customer": {"id": "\ud800"}}, "must not contain a lone surrogate U+D800 at position 0"),
    ({"total_payable": 10**12 + 1}, "less than or equal to 1000000000000"),
    ({"occurred_at": "9999-12-31T23:00:00-05:00"}, "must be from 2000 to 2200 in UTC"),
])
def test_what_storage_cannot_hold_is_refused_with_a_clear_message(
        change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidEvent) as refused:
        parse_event({**order_event("O", "C"), **change})
    [error] = refused.value.errors
    assert message in error.message


def test_a_document_nested_too_deeply_is_an_invalid_event() -> None:
    with pytest.raises(InvalidEvent, match="nested too deeply"):
        parse_event("[" * 5000 + "]" * 5000)
