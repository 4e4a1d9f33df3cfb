"""The historical import: split over processes, it writes what one process writes."""

from __future__ import annotations

import json
import random

from sqlalchemy import select

from loyalty.bootstrap import Loyalty
from loyalty.services.importing import import_events
from loyalty.storage.tables import LedgerEntry
from tests.support.db import assert_ledger_consistent
from tests.support.events import order_event


def history(prefix: str) -> list[str]:
    rng = random.Random(5)
    lines = []
    for n in range(120):
        customer = f"{prefix}-{n % 15}"
        steps = [("pending", "unpaid"), ("delivered", "paid")]
        if rng.random() < 0.2:
            steps.append(("returned", "refunded"))
        total = rng.randrange(100_000, 900_000)
        lines += [json.dumps(order_event(f"{prefix}-O{n}", customer, status, paid, total=total,
                                         at=n * 10 + i, event_id=f"{prefix}-e{n}-{i}"))
                  for i, (status, paid) in enumerate(steps)]
    lines.insert(7, "not json")
    return lines


def ledgers(loyalty: Loyalty, prefix: str) -> dict[str, list[tuple[str, int, int]]]:
    """Each member's ledger, in order, with the prefix taken off the ids."""
    rows: dict[str, list[tuple[str, int, int]]] = {}
    with loyalty.sessions() as session:
        for row in session.scalars(select(LedgerEntry).where(
                LedgerEntry.customer_id.startswith(f"{prefix}-")).order_by(LedgerEntry.id)):
            rows.setdefault(row.customer_id.removeprefix(prefix), []).append(
                (row.kind, row.points, row.balance_after))
    return rows


def test_import_split_by_customer_writes_what_one_process_writes(loyalty: Loyalty) -> None:
    single = import_events(loyalty, history("A"), jobs=1)
    split = import_events(loyalty, history("B"), jobs=2)
    assert single.outcomes == split.outcomes and single.read == split.read == 269
    assert [number for number, _ in split.refused] == [8]
    assert ledgers(loyalty, "A") == ledgers(loyalty, "B") != {}
    assert_ledger_consistent(loyalty)
