"""Building order events for tests."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

BASE_TIME = datetime.fromisoformat("2026-11-20T10:00:00+07:00")
_ids = itertools.count(1)


def order_event(order_id: str, customer_id: str, status: str = "delivered",
                payment_status: str = "paid", *, total: int = 1_250_000, shipping: int = 30_000,
                at: int = 0, placed: int = 0, event_id: str | None = None,
                **customer: Any) -> dict[str, Any]:
    """An event of SPEC §3; ``at`` and ``placed`` are minutes after BASE_TIME."""
    return {
        "event_id": event_id or f"evt-{order_id}-{next(_ids)}",
        "order_id": order_id,
        "customer": {"id": customer_id, **customer},
        "status": status,
        "payment_status": payment_status,
        "total_payable": total,
        "shipping_fee": shipping,
        "placed_at": (BASE_TIME + timedelta(minutes=placed)).isoformat(),
        "occurred_at": (BASE_TIME + timedelta(minutes=at)).isoformat(),
    }
