"""Order events shaped like a shop's: several lifecycle events per order, in arrival order."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

ZONE = timezone(timedelta(hours=7))
START = datetime(2026, 1, 5, 9, 0, tzinfo=ZONE)
HISTORY_MINUTES = 300 * 24 * 60


def _customer(number: int) -> dict[str, Any]:
    # Every event carries the optional fields too: senders do, and comparing them is part of
    # the work of applying an event.
    customer: dict[str, Any] = {
        "id": f"C-{number}", "phone": f"09{number:08d}",
        "zalo_user_id": str(8756431234567890000 + number), "name": f"Khách hàng {number}"}
    if number % 3 == 0:
        customer["birthday"] = date(1970 + number % 35, 1 + number % 12,
                                    1 + number % 28).isoformat()
    return customer


def _lifecycle(rng: random.Random, order: int, customers: int, prefix: str
               ) -> Iterator[tuple[datetime, dict[str, Any]]]:
    customer = _customer(rng.randrange(customers))
    placed = START + timedelta(minutes=rng.randrange(HISTORY_MINUTES))
    total = rng.randrange(50, 3000) * 1000
    shipping = rng.choice((0, 15_000, 30_000))
    upfront = "paid" if rng.random() < 0.5 else "unpaid"
    steps = [("pending", upfront), ("confirmed", upfront), ("shipping", upfront),
             ("delivered", "paid")]
    roll = rng.random()
    if roll < 0.08:  # cancelled before delivery
        steps = steps[:rng.randrange(1, 4)]
        steps.append(("cancelled", "refunded" if upfront == "paid" else "unpaid"))
    elif roll < 0.13:  # returned after it earned: a reversal
        steps.append(("returned", "refunded"))
    at = placed
    for step, (status, payment) in enumerate(steps):
        if step:
            at += timedelta(minutes=rng.randrange(30, 48 * 60))
        yield at, {
            "event_id": f"evt-{prefix}-{order}-{step}", "order_id": f"SO-{prefix}-{order}",
            "customer": customer, "status": status, "payment_status": payment,
            "total_payable": total, "shipping_fee": shipping,
            "placed_at": placed.isoformat(), "occurred_at": at.isoformat()}


def order_events(count: int, *, customers: int, seed: int, prefix: str) -> list[dict[str, Any]]:
    """``count`` events (about four per order), sorted by when they happened, so that the
    events of one order arrive spread out among those of other orders, as they would live."""
    rng = random.Random(seed)
    timed: list[tuple[datetime, dict[str, Any]]] = []
    order = 0
    while len(timed) < count:
        timed.extend(_lifecycle(rng, order, max(1, customers), prefix))
        order += 1
    del timed[count:]  # the last order may stop mid-way, as a live feed does
    timed.sort(key=lambda item: item[0])
    return [event for _, event in timed]
