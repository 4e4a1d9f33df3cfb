"""SPEC §2–3 on the service and the real database: ledger, tiers, idempotency, refusals."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from loyalty.bootstrap import Loyalty
from loyalty.domain.events import FieldError
from loyalty.domain.orders import Outcome
from loyalty.services.events import (
    handle_order_event,
    keep_failed,
    keep_refused,
    list_refused,
    replay_refused,
)
from loyalty.services.members import member_ledger, show_member
from loyalty.storage.db import transaction
from loyalty.storage.tables import Customer, LedgerEntry, TierChange
from tests.support.db import assert_ledger_consistent, balances
from tests.support.events import order_event


def send(loyalty: Loyalty, *events: dict) -> list[Outcome]:
    return [handle_order_event(loyalty, event, source="test").outcome for event in events]


def ledger_rows(loyalty: Loyalty, customer_id: str) -> list[LedgerEntry]:
    with loyalty.sessions() as session:
        return list(session.scalars(select(LedgerEntry).where(
            LedgerEntry.customer_id == customer_id).order_by(LedgerEntry.id)))


def test_the_seed_example_earns_1220_points_at_member(loyalty: Loyalty) -> None:
    assert send(loyalty, order_event("SO-1001", "C-42")) == [Outcome.EARNED]
    [row] = ledger_rows(loyalty, "C-42")
    assert (row.kind, row.points, row.order_id, row.tier, row.multiplier, row.balance_after) \
        == ("order_credit", 1220, "SO-1001", "member", "1.0", 1220)
    view = show_member(loyalty, "C-42")
    assert (view.tier_code, view.points, view.total_spent) == ("silver", 1220, 1_220_000)


@pytest.mark.parametrize(("start_points_order", "tier", "credit"), [
    (0, "member", 1220), (1_000_000, "silver", 1464), (2_000_000, "gold", 1586),
    (3_000_000, "diamond", 1830)])
def test_multiplier_is_that_of_the_tier_held_before_the_order(
        loyalty: Loyalty, start_points_order: int, tier: str, credit: int) -> None:
    if start_points_order:
        send(loyalty, order_event("SO-seed", "C-1", total=start_points_order, shipping=0))
    send(loyalty, order_event("SO-1001", "C-1"))
    last = ledger_rows(loyalty, "C-1")[-1]
    assert (last.tier, last.points) == (tier, credit)


def test_tier_up_at_once_and_down_after_a_reversal_with_history(loyalty: Loyalty) -> None:
    send(loyalty, order_event("A", "C-7", total=900_000, shipping=0, at=0))
    send(loyalty, order_event("B", "C-7", total=200_000, shipping=0, at=1))
    assert show_member(loyalty, "C-7").tier_code == "silver"  # 900 + 200 = 1100
    send(loyalty, order_event("B", "C-7", "returned", "refunded", total=200_000, shipping=0,
                              at=2))
    view = show_member(loyalty, "C-7")
    assert (view.tier_code, view.points, view.total_spent) == ("member", 900, 900_000)
    with loyalty.sessions() as session:
        moves = [(c.from_tier, c.to_tier, c.points) for c in session.scalars(
            select(TierChange).where(TierChange.customer_id == "C-7").order_by(TierChange.id))]
    assert moves == [("member", "silver", 1100), ("silver", "member", 900)]


def test_reversal_takes_off_exactly_what_was_credited_not_a_recomputation(
        loyalty: Loyalty) -> None:
    send(loyalty, order_event("SO-seed", "C-3", total=1_000_000, shipping=0, at=0))  # silver
    send(loyalty, order_event("SO-2", "C-3", total=500_000, shipping=0, at=1))  # 600 at ×1.2
    send(loyalty, order_event("SO-seed", "C-3", "cancelled", "refunded", total=1_000_000,
                              shipping=0, at=2))  # back to 600 points, member
    send(loyalty, order_event("SO-2", "C-3", "cancelled", "refunded", total=500_000,
                              shipping=0, at=3))
    kinds = [(row.kind, row.points) for row in ledger_rows(loyalty, "C-3")]
    # SO-2 gives back the 600 it earned at ×1.2, though the member is at ×1.0 by then.
    assert kinds == [("order_credit", 1000), ("order_credit", 600),
                     ("order_reversal", -1000), ("order_reversal", -600)]
    assert balances(loyalty)["C-3"] == 0


def test_duplicate_event_id_has_the_effect_of_once(loyalty: Loyalty) -> None:
    event = order_event("SO-1", "C-1")
    assert send(loyalty, event, event, dict(event)) == [
        Outcome.EARNED, Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert balances(loyalty) == {"C-1": 1220}


def test_an_order_earns_once_ever_even_with_new_event_ids(loyalty: Loyalty) -> None:
    send(loyalty, order_event("SO-1", "C-1", at=1), order_event("SO-1", "C-1", at=2),
         order_event("SO-1", "C-1", "delivered", "unpaid", at=3),
         order_event("SO-1", "C-1", at=4))
    assert balances(loyalty) == {"C-1": 1220}


def test_stale_and_after_final_events_change_nothing(loyalty: Loyalty) -> None:
    assert send(loyalty,
                order_event("SO-1", "C-1", "shipping", "paid", at=5),
                order_event("SO-1", "C-1", "pending", "unpaid", at=1),
                order_event("SO-1", "C-1", "cancelled", "refunded", at=6),
                order_event("SO-1", "C-1", "delivered", "paid", at=9)) == [
        Outcome.UPDATED, Outcome.UNCHANGED, Outcome.UPDATED, Outcome.UNCHANGED]
    assert balances(loyalty) == {"C-1": 0}


def test_first_event_creates_the_member_and_optional_fields_update_it(
        loyalty: Loyalty) -> None:
    send(loyalty, order_event("SO-1", "C-9", "pending", "unpaid", name="Lan",
                              phone="0901234567"))
    later = order_event("SO-1", "C-9", "confirmed", "unpaid", at=1, zalo_user_id="875643",
                        birthday="1995-03-08")
    del later["customer"]["phone"]  # absent, as the name is: both stay as they were
    send(loyalty, later)
    view = show_member(loyalty, "C-9")
    assert (view.tier_code, view.points) == ("member", 0)
    with loyalty.sessions() as session:
        customer = session.get_one(Customer, "C-9")
        assert (customer.name, customer.phone, customer.zalo_user_id, str(customer.birthday)) \
            == ("Lan", "0901234567", "875643", "1995-03-08")


def test_invalid_event_is_kept_with_every_field_named_and_never_applied(
        loyalty: Loyalty) -> None:
    bad = order_event("SO-1", "C-1")
    bad.update(total_payable=-5, status="lost")
    del bad["occurred_at"]
    assert send(loyalty, bad) == [Outcome.REFUSED]
    [kept] = list_refused(loyalty)
    assert {e["field"] for e in kept.errors} == {"total_payable", "status", "occurred_at"}
    assert "total_payable" in kept.reason and kept.event_id == bad["event_id"]
    assert balances(loyalty) == {}
    # Replaying it unchanged fails again and it stays listed.
    assert replay_refused(loyalty, kept.id).outcome is Outcome.REFUSED
    assert len(list_refused(loyalty)) == 1


def test_event_naming_another_customer_than_the_orders_is_kept_refused(
        loyalty: Loyalty) -> None:
    send(loyalty, order_event("SO-2", "C-3", "pending", "unpaid"))
    assert send(loyalty, order_event("SO-2", "C-2", at=1)) == [Outcome.REFUSED]
    [kept] = list_refused(loyalty)
    assert kept.errors[0]["field"] == "customer.id"
    assert "belongs to customer C-3" in kept.reason
    assert replay_refused(loyalty, kept.id).outcome is Outcome.REFUSED
    assert balances(loyalty) == {"C-3": 0}


def test_a_kept_event_replays_once(loyalty: Loyalty) -> None:
    # What a worker keeps when an event fails for an unexpected reason (a bug, say).
    event = order_event("SO-1", "C-1")
    kept_id = keep_failed(loyalty, event, ZeroDivisionError("division by zero"), "queue")
    [kept] = list_refused(loyalty)
    assert kept.reason == "not applied: unexpected ZeroDivisionError: division by zero"
    assert replay_refused(loyalty, kept_id).outcome is Outcome.EARNED
    assert list_refused(loyalty) == []
    assert [row.replay_outcome for row in list_refused(loyalty, include_replayed=True)] == [
        "earned"]
    assert replay_refused(loyalty, kept_id).outcome is Outcome.DUPLICATE
    assert balances(loyalty) == {"C-1": 1220}


def test_ledger_is_append_only_in_the_database(loyalty: Loyalty) -> None:
    send(loyalty, order_event("SO-1", "C-1"))
    for statement in ("UPDATE ledger_entries SET points = 1",
                      "DELETE FROM ledger_entries"):
        with pytest.raises(DBAPIError), transaction(loyalty.sessions) as session:
            session.execute(text(statement))
    assert_ledger_consistent(loyalty)


def test_database_refuses_a_second_credit_for_one_order(loyalty: Loyalty) -> None:
    send(loyalty, order_event("SO-1", "C-1"))
    [row] = ledger_rows(loyalty, "C-1")
    with pytest.raises(IntegrityError), transaction(loyalty.sessions) as session:
        session.add(LedgerEntry(customer_id="C-1", kind="order_credit", points=1,
                                order_id="SO-1", tier="member", multiplier="1.0",
                                balance_after=1221, created_at=row.created_at))


def test_ledger_read_model_is_newest_first(loyalty: Loyalty) -> None:
    send(loyalty, order_event("A", "C-1", at=0), order_event("B", "C-1", at=1),
         order_event("A", "C-1", "returned", "refunded", at=2))
    lines = member_ledger(loyalty, "C-1")
    # A at ×1.0 makes C-1 Silver, so B earns 1464 at ×1.2; A's reversal takes its 1220.
    assert [(line.kind, line.order_id, line.points, line.balance_after) for line in lines] == [
        ("order_reversal", "A", -1220, 1464), ("order_credit", "B", 1464, 2684),
        ("order_credit", "A", 1220, 1220)]


def test_the_same_event_id_with_other_content_is_a_conflict_kept_for_ops(
        loyalty: Loyalty) -> None:
    event = order_event("SO-1", "C-1", event_id="evt-1")
    assert send(loyalty, event) == [Outcome.EARNED]
    # The same content however spelled (another offset for the same instant, another key
    # order) is a plain duplicate …
    same = dict(reversed(list(event.items())))
    same["placed_at"] = "2026-11-20T03:00:00+00:00"  # BASE_TIME, 10:00 at +07:00
    assert send(loyalty, same) == [Outcome.DUPLICATE]
    # … but other content under a known id changes nothing and is kept as a conflict.
    changed = dict(event, total_payable=9_999_000)
    assert send(loyalty, changed) == [Outcome.REFUSED]
    [kept] = list_refused(loyalty)
    assert kept.event_id == "evt-1" and kept.errors[0]["field"] == "event_id"
    assert "already processed with other content" in kept.reason
    assert balances(loyalty) == {"C-1": 1220}
    assert replay_refused(loyalty, kept.id).outcome is Outcome.REFUSED


# What no database can hold as text (NUL, lone surrogates) and what no id should hold (other
# control characters), in values and in keys, as JSON can carry them.
HOSTILE = {**order_event("SO-1", "C-1"), "event_id": "evt-\x00\ud800", "order_id": "SO-\udfff",
           "customer": {"id": "C-\x00", "name": "Lan\x85\x1b[0m"},
           "\ud83d": ["\x00", {"\x7f": "x\udc00"}]}


def test_a_refused_event_is_kept_whatever_it_holds_and_replays_as_sent(
        loyalty: Loyalty) -> None:
    assert send(loyalty, HOSTILE) == [Outcome.REFUSED]
    [kept] = list_refused(loyalty)
    # Escaped, not dropped: the payload is the very event that was sent.
    assert json.loads(kept.payload) == HOSTILE
    assert kept.event_id == "evt-\\u0000\\ud800"
    assert {e["field"] for e in kept.errors} == {"event_id", "order_id", "customer.id",
                                                 "customer.name"}
    assert replay_refused(loyalty, kept.id).outcome is Outcome.REFUSED
    assert json.loads(list_refused(loyalty)[0].payload) == HOSTILE


def test_a_refused_payload_that_is_not_json_is_kept_escaped(loyalty: Loyalty) -> None:
    problem = [FieldError(field="(event)", message="not JSON")]
    keep_refused(loyalty, b'{"event_id": "\xff\x00', problem, "queue")
    keep_refused(loyalty, '{"event_id":\n "\x00\ud800', problem, "queue")
    as_bytes, as_text = list_refused(loyalty)
    assert as_bytes.payload == '{"event_id": "\\xff\\u0000'
    # Newlines stay: between JSON's tokens they are its own whitespace.
    assert as_text.payload == '{"event_id":\n "\\u0000\\ud800'
