"""The cross-sell tag ``Đã gửi tin`` (seed 001, Chiến dịch 4; SPEC §2 "cross-sell tag"):
set when a nudge is sent, cleared when its 15 days are up, mirrored on the OA when the
program says so. The database is the source of truth.

The due time lives in the database and a periodic sweep clears what is due, rather than a
15-day Celery countdown, which the Redis broker would hand out again and again.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from loyalty.domain.crosssell import tag_expires_at
from loyalty.services.outbox import AfterCommit
from loyalty.storage.db import transaction
from loyalty.storage.tables import Customer, CustomerTag, Message

if TYPE_CHECKING:
    from loyalty.bootstrap import Loyalty


def tag_nudged_member(loyalty: Loyalty, session: Session, nudge: Message) -> AfterCommit | None:
    """What follows a sent nudge, in the transaction that records it as sent: the tag, and
    its OA mirror once that has committed."""
    assert nudge.sent_at is not None
    crosssell = loyalty.program.crosssell
    session.add(CustomerTag(customer_id=nudge.customer_id, name=crosssell.tag_name,
                            message_id=nudge.id, set_at=nudge.sent_at,
                            expires_at=tag_expires_at(loyalty.program, nudge.sent_at)))
    if not crosssell.mirror_oa_tag:
        return None
    # Whatever channel carried the nudge, the OA tags the member's OA user id, if any.
    user_id = session.get_one(Customer, nudge.customer_id).zalo_user_id
    if user_id is None:
        return None
    return lambda: loyalty.tasks.mirror_oa_tag(user_id, crosssell.tag_name, add=True)


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
        cleared = [(tag.customer_id, user_id, tag.name) for tag, user_id in due]
    if loyalty.program.crosssell.mirror_oa_tag:
        for _, user_id, name in cleared:
            if user_id:
                loyalty.tasks.mirror_oa_tag(user_id, name, add=False)
    return cleared
