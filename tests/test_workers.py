"""Order events through real Celery worker processes, real Redis and the real database."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import func, select

from devtools.processes import WorkerProcess, wait_for
from loyalty.bootstrap import Loyalty
from loyalty.domain.tiers import tier_for_points
from loyalty.producer import enqueue_order_events
from loyalty.services.members import show_member
from loyalty.storage.tables import LedgerEntry
from tests.support.db import (
    assert_ledger_consistent,
    balances,
    processed_count,
    wait_until_processed,
)
from tests.support.events import order_event
from tests.support.model import Step, expected

pytestmark = pytest.mark.workers


def test_lifecycle_through_workers(loyalty: Loyalty, workers: list[WorkerProcess],
                                   celery_sender: Celery) -> None:
    events = [order_event("SO-1", "C-42", "pending", "unpaid", at=0),
              order_event("SO-1", "C-42", "delivered", "paid", at=10)]
    assert enqueue_order_events(events, celery=celery_sender) == 2
    wait_until_processed(loyalty, 2)
    assert balances(loyalty) == {"C-42": 1220}


def test_two_workers_on_one_customers_200_orders_lose_nothing(
        loyalty: Loyalty, workers: list[WorkerProcess], celery_sender: Celery) -> None:
    # The orders cross two thresholds, so each credit depends on the balance before it:
    # a lost update would show in the total and in the ledger's sums.
    events = [order_event(f"SO-{i}", "C-busy", total=10_000, shipping=0, at=i)
              for i in range(200)]
    enqueue_order_events(events, celery=celery_sender)
    wait_until_processed(loyalty, 200)
    assert_ledger_consistent(loyalty)
    with loyalty.sessions() as session:
        credits = session.scalar(select(func.count()).select_from(LedgerEntry).where(
            LedgerEntry.kind == "order_credit"))
    assert credits == 200
    # 100 credits of 10 at ×1.0 reach 1000 (Silver), 84 of 12 at ×1.2 reach 2008 (Gold),
    # the last 16 earn 13 each at ×1.3.
    assert balances(loyalty)["C-busy"] == 1000 + 84 * 12 + 16 * 13


def test_random_lifecycles_duplicated_and_shuffled_match_the_reference(
        loyalty: Loyalty, workers: list[WorkerProcess], celery_sender: Celery) -> None:
    rng = random.Random(7)
    events, expected_points, expected_spend = [], {}, {}
    for n in range(80):
        customer = f"C-{n}"
        total = rng.randrange(0, 900_000)
        shipping = rng.randrange(0, 40_000)
        lifecycle: list[Step] = [
            ("pending", "unpaid", None), ("confirmed", "unpaid", None),
            ("shipping", "unpaid", None), ("delivered", rng.choice(["paid", "unpaid"]), None)]
        # Partial refunds (cumulative amounts), sometimes a full one, sometimes an ending.
        for _ in range(rng.choice([0, 0, 1, 2, 3])):
            lifecycle.append(("delivered", "paid", rng.randrange(0, total + 1)))
        if rng.random() < 0.15:
            lifecycle.append(("delivered", "refunded", None))
        ending = rng.choice([None, None, "cancelled", "returned"])
        if ending:
            lifecycle.append((ending, "refunded", None))
        for minute, (status, paid, refunded) in enumerate(lifecycle):
            event = order_event(f"SO-{n}", customer, status, paid, total=total,
                                shipping=shipping, at=minute)
            if refunded is not None:
                event["refunded_amount"] = refunded
            events.append(event)
        model = expected(lifecycle, total, shipping)
        # One order per member: credited at Member, ×1.0.
        expected_points[customer] = model.points(model.earning // 1000)
        expected_spend[customer] = model.spend
    sent = events + rng.sample(events, 60)  # at least once: some twice
    rng.shuffle(sent)
    enqueue_order_events(sent, celery=celery_sender)
    wait_until_processed(loyalty, len(events))
    assert balances(loyalty) == expected_points
    assert {customer: show_member(loyalty, customer).total_spent
            for customer in expected_spend} == expected_spend
    assert_ledger_consistent(loyalty)
    with loyalty.sessions() as session:
        refund_rows = session.scalar(select(func.count()).select_from(LedgerEntry).where(
            LedgerEntry.kind == "order_refund"))
    assert refund_rows, "the lifecycles refunded nothing: the test proves less than it says"


def test_worker_killed_mid_queue_then_restarted_applies_every_event_once(
        loyalty: Loyalty, workers: list[WorkerProcess], celery_sender: Celery,
        tmp_path: Path) -> None:
    for worker in workers:  # this test needs the queue to itself
        worker.stop()
    victim = WorkerProcess(loyalty.settings, tmp_path / "victim.log", name="victim")
    heir = WorkerProcess(loyalty.settings, tmp_path / "heir.log", name="heir")
    try:
        victim.start()
        spend = {f"K-{i}": 50_000 + i * 1000 for i in range(400)}
        events = [order_event(order_id, f"KC-{i % 40}", total=total, shipping=0)
                  for i, (order_id, total) in enumerate(spend.items())]
        for event in events:  # one request, so one task, each: many left when it is killed
            enqueue_order_events(event, celery=celery_sender)
        wait_for(lambda: processed_count(loyalty) >= 40, 60, "the victim never got going")
        victim.kill()
        assert processed_count(loyalty) < len(events), "finished before it could be killed"

        heir.start()
        # What the victim held unacknowledged comes back after the visibility timeout.
        wait_until_processed(loyalty, len(events), timeout=120)
        with loyalty.sessions() as session:
            credits = list(session.scalars(select(LedgerEntry).where(
                LedgerEntry.kind == "order_credit")))
        assert sorted(row.order_id for row in credits) == sorted(spend)
        for row in credits:
            held = tier_for_points(loyalty.program, row.balance_after - row.points)
            assert row.points == int(Decimal(spend[row.order_id]) / 1000 * held.multiplier)
        assert_ledger_consistent(loyalty)
    finally:
        victim.stop()
        heir.stop()
        for worker in workers:
            worker.start()
