"""Batched intake: several events a task, one transaction a batch, each event still exactly
once, through real workers; and the import, which applies the same code to a file."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator

import pytest
from celery import Celery
from sqlalchemy import select, text

from devtools.processes import WorkerProcess
from loyalty.bootstrap import Loyalty
from loyalty.domain.orders import Outcome
from loyalty.producer import enqueue_order_events
from loyalty.queueing import batches_by_customer
from loyalty.services.events import handle_order_events, list_refused
from loyalty.services.importing import import_events
from loyalty.storage.tables import LedgerEntry, TierChange
from tests.conftest import wipe
from tests.support.db import (
    assert_ledger_consistent,
    balances,
    processed_count,
    wait_until_processed,
)
from tests.support.events import order_event


def test_batches_keep_a_customers_events_together_and_in_order() -> None:
    events = [order_event(f"SO-{n}", f"C-{n % 3}", at=n) for n in range(9)]
    events += [order_event(f"SO-big-{n}", "C-big", at=n) for n in range(5)]
    batches = batches_by_customer(events, 4)
    assert all(len(batch) <= 4 for batch in batches)
    assert sorted(e["event_id"] for batch in batches for e in batch) == sorted(
        e["event_id"] for e in events)
    for customer in ("C-0", "C-1", "C-2", "C-big"):
        homes = [i for i, batch in enumerate(batches)
                 if any(e["customer"]["id"] == customer for e in batch)]
        mine = [e for i in homes for e in batches[i] if e["customer"]["id"] == customer]
        assert mine == [e for e in events if e["customer"]["id"] == customer]
        # Together, unless a customer has more events than a batch holds.
        assert len(homes) == (2 if customer == "C-big" else 1)


def test_one_refused_event_of_a_batch_is_kept_and_the_others_apply(loyalty: Loyalty) -> None:
    handle_order_events(loyalty, [order_event("SO-9", "C-9", "pending", "unpaid")],
                        source="test")
    invalid = dict(order_event("SO-2", "C-2"), total_payable="lots")
    wrong_customer = order_event("SO-9", "C-8", at=5)  # SO-9 is C-9's
    batch = [order_event("SO-1", "C-1"), invalid, wrong_customer,
             order_event("SO-3", "C-1", at=1), order_event("SO-1", "C-1", "cancelled",
                                                          "refunded", at=9)]
    outcomes = [a.outcome for a in handle_order_events(loyalty, batch, source="test")]
    assert outcomes == [Outcome.EARNED, Outcome.REFUSED, Outcome.REFUSED, Outcome.EARNED,
                        Outcome.REVERSED]
    assert {row.event_id for row in list_refused(loyalty)} == {
        invalid["event_id"], wrong_customer["event_id"]}
    # C-8 is not created by an event that was refused. C-1 keeps SO-3 only, credited at
    # Silver (SO-1 had made C-1 Silver before it was cancelled): 1220 × 1.2.
    assert balances(loyalty) == {"C-9": 0, "C-1": 1464}
    assert processed_count(loyalty) == 4  # the refused ones leave no processed row
    assert_ledger_consistent(loyalty)


def test_duplicates_inside_a_batch_count_once(loyalty: Loyalty) -> None:
    event = order_event("SO-1", "C-1")
    changed = dict(event, total_payable=5_000_000)
    outcomes = [a.outcome for a in handle_order_events(loyalty, [event, event, changed],
                                                       source="test")]
    assert outcomes == [Outcome.EARNED, Outcome.DUPLICATE, Outcome.REFUSED]
    assert balances(loyalty) == {"C-1": 1220}


@pytest.fixture
def fail_once(loyalty: Loyalty) -> Iterator[None]:
    """The first ledger row for order SO-FAIL fails as a deadlock would; later ones pass.

    A sequence keeps the count: unlike a table, it is not rolled back with the failure.
    """
    with loyalty.engine.begin() as connection:
        connection.execute(text("CREATE SEQUENCE fail_once"))
        connection.execute(text(
            "CREATE FUNCTION fail_once() RETURNS trigger AS $$ BEGIN "
            "IF NEW.order_id = 'SO-FAIL' AND nextval('fail_once') = 1 THEN "
            "RAISE EXCEPTION 'injected' USING ERRCODE = '40P01'; END IF; RETURN NEW; END $$ "
            "LANGUAGE plpgsql"))
        connection.execute(text("CREATE TRIGGER fail_once BEFORE INSERT ON ledger_entries "
                                "FOR EACH ROW EXECUTE FUNCTION fail_once()"))
    yield
    with loyalty.engine.begin() as connection:
        connection.execute(text("DROP TRIGGER fail_once ON ledger_entries"))
        connection.execute(text("DROP FUNCTION fail_once()"))
        connection.execute(text("DROP SEQUENCE fail_once"))


@pytest.mark.services_only
@pytest.mark.workers
def test_a_batch_that_fails_mid_transaction_is_retried_and_nothing_doubles(
        loyalty: Loyalty, fail_once: None, workers: list[WorkerProcess],
        celery_sender: Celery) -> None:
    batch = [order_event("SO-A", "C-1"), order_event("SO-FAIL", "C-1", at=1),
             order_event("SO-B", "C-2", at=2)]
    enqueue_order_events(batch, celery=celery_sender)
    wait_until_processed(loyalty, 3)
    # SO-A at ×1.0 makes C-1 Silver; SO-FAIL is then credited at ×1.2.
    assert balances(loyalty) == {"C-1": 1220 + 1464, "C-2": 1220}
    with loyalty.sessions() as session:
        failures = session.scalar(text("SELECT last_value FROM fail_once"))
        credits = session.scalars(select(LedgerEntry.order_id)).all()
    assert failures >= 2, "the injected failure never happened"
    assert sorted(credits) == ["SO-A", "SO-B", "SO-FAIL"]
    assert list_refused(loyalty) == []
    assert_ledger_consistent(loyalty)


@pytest.mark.workers
def test_two_workers_on_batches_that_share_customers_lose_nothing(
        loyalty: Loyalty, workers: list[WorkerProcess], celery_sender: Celery) -> None:
    rng = random.Random(3)
    customers = [f"C-{n}" for n in range(12)]
    requests = []
    for r in range(20):  # 20 requests, each touching most of the same customers
        requests.append([order_event(f"SO-{r}-{k}", rng.choice(customers), total=10_000,
                                     shipping=0, at=r) for k in range(30)])
    for request in requests:
        enqueue_order_events(request, celery=celery_sender)
    total = sum(len(request) for request in requests)
    wait_until_processed(loyalty, total)
    assert list_refused(loyalty) == []
    assert_ledger_consistent(loyalty)
    with loyalty.sessions() as session:
        credited = session.scalar(text(
            "SELECT count(*) FROM ledger_entries WHERE kind = 'order_credit'"))
    assert credited == total


def _history(rng: random.Random) -> list[dict]:
    events = []
    for n in range(400):
        customer = f"H-{n % 40}"
        total = rng.randrange(50, 900) * 1000
        steps = [("pending", "unpaid"), ("delivered", "paid")]
        if rng.random() < 0.2:
            steps.append((rng.choice(["cancelled", "returned"]), "refunded"))
        for minute, (status, paid) in enumerate(steps):
            events.append(order_event(f"HO-{n}", customer, status, paid, total=total,
                                      shipping=rng.choice([0, 30_000]), at=n * 10 + minute))
    events += rng.sample(events, 40)  # some sent twice
    return events


def _ledgers(loyalty: Loyalty) -> tuple[dict, dict, dict]:
    with loyalty.sessions() as session:
        rows: dict[str, list] = {}
        for row in session.scalars(select(LedgerEntry).order_by(LedgerEntry.id)):
            rows.setdefault(row.customer_id, []).append(
                (row.kind, row.points, row.order_id, row.tier, row.multiplier,
                 row.balance_after, row.nudge_id))
        history: dict[str, list] = {}
        for change in session.scalars(select(TierChange).order_by(TierChange.id)):
            history.setdefault(change.customer_id, []).append(
                (change.from_tier, change.to_tier, change.points))
        tiers = dict(session.execute(text("SELECT id, tier FROM customers")).all())
    return rows, history, tiers


@pytest.mark.workers
def test_importing_a_file_writes_what_the_live_path_writes(
        loyalty: Loyalty, workers: list[WorkerProcess], celery_sender: Celery) -> None:
    events = _history(random.Random(11))
    enqueue_order_events(events, celery=celery_sender)
    wait_until_processed(loyalty, len({e["event_id"] for e in events}))
    live = (balances(loyalty), *_ledgers(loyalty))

    wipe(loyalty)
    report = import_events(loyalty, io.StringIO("".join(json.dumps(e) + "\n" for e in events)))
    assert report.read == len(events) and report.outcomes[Outcome.DUPLICATE] == 40
    imported = (balances(loyalty), *_ledgers(loyalty))
    assert imported == live
    assert_ledger_consistent(loyalty)
