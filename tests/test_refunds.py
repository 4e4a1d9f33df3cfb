"""SPEC §2 "refund" as worked examples on the service and the real database: partial and full
refunds, repeated and out of order, with and without a cross-sell bonus, and with
cancellations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from loyalty.bootstrap import Loyalty
from loyalty.domain.orders import Outcome
from loyalty.services.events import handle_order_event, list_refused
from loyalty.services.members import show_member
from loyalty.storage.db import transaction
from loyalty.storage.tables import LedgerEntry, Message, TierChange
from tests.support.db import assert_ledger_consistent, balances
from tests.support.events import BASE_TIME, order_event

# The seed's order: (1,250,000 - 30,000) / 1000 × 1.0 = 1220 points at Member.
EARNING = 1_220_000


def refund_event(order_id: str, customer_id: str, refunded: object, *, at: int,
                 status: str = "delivered", payment: str = "paid", **amounts: int) -> dict:
    return {**order_event(order_id, customer_id, status, payment, at=at, **amounts),
            "refunded_amount": refunded}


def send(loyalty: Loyalty, *events: dict) -> list[Outcome]:
    return [handle_order_event(loyalty, event, source="test").outcome for event in events]


def rows(loyalty: Loyalty, customer_id: str) -> list[tuple[str, int, int | None]]:
    with loyalty.sessions() as session:
        return [(row.kind, row.points, row.refunded_to) for row in session.scalars(
            select(LedgerEntry).where(LedgerEntry.customer_id == customer_id)
            .order_by(LedgerEntry.id))]


def spent(loyalty: Loyalty, customer_id: str) -> int:
    return show_member(loyalty, customer_id).total_spent


def test_partial_refunds_take_back_their_share_in_steps_and_a_late_smaller_one_nothing(
        loyalty: Loyalty) -> None:
    half = refund_event("SO-1", "C-1", 610_000, at=2)
    assert send(loyalty, order_event("SO-1", "C-1", at=0),
                refund_event("SO-1", "C-1", 305_000, at=1),  # a quarter
                half,  # half, in all
                half,  # delivered twice
                refund_event("SO-1", "C-1", 305_000, at=1),  # the quarter again, late
                refund_event("SO-1", "C-1", 610_000, at=3)) == [  # the half again, later
        Outcome.EARNED, Outcome.REFUNDED, Outcome.REFUNDED, Outcome.DUPLICATE,
        Outcome.UNCHANGED, Outcome.UPDATED]
    # floor(1220 × 305,000 / 1,220,000) = 305, then 610 in all: 305 more.
    assert rows(loyalty, "C-1") == [("order_credit", 1220, None),
                                    ("order_refund", -305, 305_000),
                                    ("order_refund", -305, 610_000)]
    assert balances(loyalty) == {"C-1": 610}
    assert spent(loyalty, "C-1") == EARNING - 610_000
    # 1220 made C-1 Silver; the first refund took them back to Member.
    with loyalty.sessions() as session:
        moves = [(c.from_tier, c.to_tier, c.points, c.reason) for c in session.scalars(
            select(TierChange).where(TierChange.customer_id == "C-1").order_by(TierChange.id))]
    assert moves == [("member", "silver", 1220, "points"), ("silver", "member", 915, "points")]
    assert_ledger_consistent(loyalty)


def test_partial_refunds_end_the_same_whatever_the_arrival_order(loyalty: Loyalty) -> None:
    in_order = [order_event("A", "C-in", "shipping", "paid", at=0),
                order_event("A", "C-in", at=1),
                refund_event("A", "C-in", 100_000, at=2),
                refund_event("A", "C-in", 500_000, at=3)]
    reversed_order = [{**event, "order_id": "B", "customer": {"id": "C-back"},
                       "event_id": f"{event['event_id']}-b"} for event in reversed(in_order)]
    send(loyalty, *in_order)
    # The largest refund comes first: it earns and takes back floor(1220 × 500/1220) = 500
    # in one go; the delivered event and the smaller refund that follow change nothing.
    assert send(loyalty, *reversed_order) == [
        Outcome.EARNED, Outcome.UNCHANGED, Outcome.UNCHANGED, Outcome.UNCHANGED]
    assert rows(loyalty, "C-back") == [("order_credit", 1220, None),
                                       ("order_refund", -500, 500_000)]
    assert [points for _, points, _ in rows(loyalty, "C-in")] == [1220, -100, -400]
    assert balances(loyalty) == {"C-in": 720, "C-back": 720}
    assert spent(loyalty, "C-in") == spent(loyalty, "C-back") == EARNING - 500_000


def test_a_refund_before_the_order_earned_is_applied_when_it_earns(loyalty: Loyalty) -> None:
    assert send(loyalty, refund_event("SO-1", "C-1", 610_000, at=0, status="shipping"),
                order_event("SO-1", "C-1", at=1)) == [Outcome.UPDATED, Outcome.EARNED]
    assert rows(loyalty, "C-1") == [("order_credit", 1220, None),
                                    ("order_refund", -610, 610_000)]


@pytest.mark.parametrize("full_refund", [
    pytest.param({"payment": "refunded"}, id="payment_status refunded"),
    pytest.param({"refunded": EARNING}, id="refunded_amount reaches the earning amount"),
    pytest.param({"refunded": 1_250_000}, id="refunded_amount with the shipping"),
])
def test_a_full_refund_takes_back_the_rest_like_a_cancellation(
        loyalty: Loyalty, full_refund: dict) -> None:
    send(loyalty, order_event("SO-1", "C-1", at=0), refund_event("SO-1", "C-1", 305_000, at=1))
    full = refund_event("SO-1", "C-1", full_refund.get("refunded", 305_000), at=2,
                        payment=full_refund.get("payment", "paid"))
    assert send(loyalty, full) == [Outcome.REFUNDED]
    # Exactly what the order still held: 1220 - 305.
    assert rows(loyalty, "C-1")[-1] == ("order_refund", -915, EARNING)
    assert balances(loyalty) == {"C-1": 0} and spent(loyalty, "C-1") == 0
    # Nothing after a full refund changes the order's points: not a cancellation, not a
    # larger refund, not another delivered-and-paid event.
    assert send(loyalty, order_event("SO-1", "C-1", "cancelled", "refunded", at=3)) == [
        Outcome.UPDATED]
    send(loyalty, refund_event("SO-1", "C-1", 1_250_000, at=4), order_event("SO-1", "C-1", at=5))
    assert len(rows(loyalty, "C-1")) == 3 and balances(loyalty) == {"C-1": 0}


def test_a_cancellation_after_a_partial_refund_takes_back_the_rest_exactly(
        loyalty: Loyalty) -> None:
    send(loyalty, order_event("SO-1", "C-1", at=0), refund_event("SO-1", "C-1", 305_000, at=1),
         order_event("SO-1", "C-1", "returned", "refunded", at=2))
    assert rows(loyalty, "C-1") == [("order_credit", 1220, None),
                                    ("order_refund", -305, 305_000),
                                    ("order_reversal", -915, None)]
    assert balances(loyalty) == {"C-1": 0}


def test_a_refund_after_a_cancellation_changes_nothing(loyalty: Loyalty) -> None:
    send(loyalty, order_event("SO-1", "C-1", at=0),
         order_event("SO-1", "C-1", "cancelled", "refunded", at=1))
    assert send(loyalty, refund_event("SO-1", "C-1", 305_000, at=2),
                refund_event("SO-1", "C-1", 100_000, at=3, payment="refunded")) == [
        Outcome.UNCHANGED, Outcome.UNCHANGED]
    assert rows(loyalty, "C-1") == [("order_credit", 1220, None),
                                    ("order_reversal", -1220, None)]


def test_a_refund_of_an_order_that_never_earned_changes_nothing(loyalty: Loyalty) -> None:
    assert send(loyalty, refund_event("SO-1", "C-1", 100_000, at=0, status="confirmed"),
                order_event("SO-2", "C-1", "delivered", "refunded", at=0)) == [
        Outcome.UPDATED, Outcome.UPDATED]
    assert rows(loyalty, "C-1") == [] and spent(loyalty, "C-1") == 0
    # SO-2 is known refunded in full: a delivered-and-paid event arriving late never earns.
    assert send(loyalty, order_event("SO-2", "C-1", at=-5)) == [Outcome.UNCHANGED]
    assert balances(loyalty) == {"C-1": 0}


def test_the_refund_share_is_measured_on_the_amounts_of_the_event_that_earned(
        loyalty: Loyalty) -> None:
    send(loyalty, order_event("SO-1", "C-1", at=0))  # earning amount 1,220,000
    # A later event says the order was larger; its refund is still a share of what earned.
    send(loyalty, refund_event("SO-1", "C-1", 610_000, at=1, total=2_000_000, shipping=0))
    assert rows(loyalty, "C-1")[-1] == ("order_refund", -610, 610_000)
    assert spent(loyalty, "C-1") == EARNING - 610_000


def _nudge_sent_to(loyalty: Loyalty, customer_id: str) -> None:
    sent_at = BASE_TIME - timedelta(hours=1)
    with transaction(loyalty.sessions) as session:
        session.add(Message(kind="nudge", customer_id=customer_id, channel="log",
                            recipient="u1", text="nudge", status="sent", attempts=1,
                            created_at=sent_at, updated_at=sent_at, sent_at=sent_at))


def test_with_a_bonus_a_partial_refund_keeps_it_and_a_full_one_takes_it_with_a_notice(
        loyalty: Loyalty) -> None:
    send(loyalty, order_event("SO-0", "C-1", "pending", "unpaid", zalo_user_id="u1"))
    _nudge_sent_to(loyalty, "C-1")
    assert send(loyalty, order_event("SO-1", "C-1", at=1),
                refund_event("SO-1", "C-1", 610_000, at=2)) == [
        Outcome.EARNED, Outcome.REFUNDED]
    assert rows(loyalty, "C-1") == [("order_credit", 1220, None),
                                    ("crosssell_bonus", 100, None),
                                    ("order_refund", -610, 610_000)]
    send(loyalty, refund_event("SO-1", "C-1", 610_000, at=3, payment="refunded"))
    assert rows(loyalty, "C-1")[3:] == [("order_refund", -610, EARNING),
                                        ("crosssell_bonus_reversal", -100, None)]
    assert balances(loyalty) == {"C-1": 0}
    with loyalty.sessions() as session:
        [notice] = session.scalars(select(Message).where(Message.kind == "bonus_reversal"))
    assert notice.order_id == "SO-1" and "100" in notice.text and "hoàn tiền" in notice.text


def test_refunded_amount_is_checked_like_the_other_amounts(loyalty: Loyalty) -> None:
    for bad in (-1, "305000", 1.5, 1_250_001):
        assert send(loyalty, refund_event("SO-1", "C-1", bad, at=0)) == [Outcome.REFUSED]
    reasons = [kept.errors for kept in list_refused(loyalty)]
    assert all(errors[0]["field"] == "refunded_amount" for errors in reasons)
    assert "must not be more than total_payable (1250000)" in reasons[-1][0]["message"]
    assert balances(loyalty) == {}


def test_the_database_takes_each_refund_step_once(loyalty: Loyalty) -> None:
    send(loyalty, order_event("SO-1", "C-1", at=0), refund_event("SO-1", "C-1", 305_000, at=1))
    step = {"customer_id": "C-1", "kind": "order_refund", "order_id": "SO-1", "tier": "member",
            "multiplier": "1.0", "created_at": BASE_TIME}
    # The same step again (a redelivery, or a second worker that computed it too) …
    with pytest.raises(IntegrityError), transaction(loyalty.sessions) as session:
        session.add(LedgerEntry(**step, points=-305, balance_after=610, refunded_to=305_000))
    # … and a refund row that names no step are refused; a further step is not.
    with pytest.raises(IntegrityError), transaction(loyalty.sessions) as session:
        session.add(LedgerEntry(**step, points=-1, balance_after=914))
    with transaction(loyalty.sessions) as session:
        session.add(LedgerEntry(**step, points=-1, balance_after=914, refunded_to=306_000))
