"""Building order events for tests."""

from __future__ import annotations

import itertools
import zlib
from datetime import datetime, timedelta
from typing import Any

BASE_TIME = datetime.fromisoformat("2026-11-20T10:00:00+07:00")
_ids = itertools.count(1)
# Every format of phone the events accept (an optional + and 8 to 15 digits, any country):
# each event of the suite carries one, so the scan of the suite's logs looks for real ones.
PHONE_FORMATS = ("090{:07d}", "+8490{:07d}", "8490{:07d}", "+659{:07d}", "1202{:07d}",
                 "9{:07d}", "+99{:07d}123456")
PHONES_SENT: set[str] = set()


def phone_of(customer_id: str) -> str:
    """The customer's phone: the same for every event that names the customer."""
    digest = zlib.crc32(customer_id.encode())
    return PHONE_FORMATS[digest % len(PHONE_FORMATS)].format(digest % 10**7)


def order_event(order_id: str, customer_id: str, status: str = "delivered",
                payment_status: str = "paid", *, total: int = 1_250_000, shipping: int = 30_000,
                at: int = 0, placed: int = 0, event_id: str | None = None,
                **customer: Any) -> dict[str, Any]:
    """An event of SPEC §3; ``at`` and ``placed`` are minutes after BASE_TIME."""
    if "phone" not in customer:
        customer["phone"] = phone_of(customer_id)
    if customer["phone"]:
        PHONES_SENT.add(str(customer["phone"]))
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
