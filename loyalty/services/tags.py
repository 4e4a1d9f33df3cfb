"""Clearing ``Đã gửi tin`` when its 15 days are up (seed 001, Chiến dịch 4).

The due time lives in the database and a periodic sweep clears what is due, rather than a
15-day Celery countdown, which the Redis broker would hand out again and again.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from loyalty.bootstrap import Loyalty
from loyalty.storage.db import transaction
from loyalty.storage.tables import Customer, CustomerTag


def sweep_tags(loyalty: Loyalty, as_of: datetime) -> list[tuple[str, str | None, str]]:
    """Clear every live tag due by ``as_of``; returns (customer, zalo user id, tag)."""
    with transaction(loyalty.sessions) as session:
        due = session.execute(
            select(CustomerTag, Customer.zalo_user_id)
            .join(Customer, Customer.id == CustomerTag.customer_id)
            .where(CustomerTag.cleared_at.is_(None), CustomerTag.expires_at <= as_of)
            .with_for_update(skip_locked=True, of=CustomerTag)).all()
        for tag, _ in due:
            tag.cleared_at = as_of
        return [(tag.customer_id, user_id, tag.name) for tag, user_id in due]

