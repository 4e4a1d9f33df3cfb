"""The daily birthday job: a message with the tier's gift, at most once in 365 days."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, exists, extract, or_, select

from loyalty.domain.birthdays import birthday_text, birthdays_celebrated_on, gift_window_start
from loyalty.domain.messages import MessageKind, MessageStatus
from loyalty.services.outbox import new_message
from loyalty.storage.db import transaction
from loyalty.storage.queries import reachable_on
from loyalty.storage.tables import Customer, Message

if TYPE_CHECKING:
    from loyalty.bootstrap import Loyalty


@dataclass
class BirthdayReport:
    celebrated: int = 0
    queued: list[int] = field(default_factory=list)
    skipped_recent_gift: int = 0
    unreachable: int = 0


def run_birthdays(loyalty: Loyalty, as_of: datetime) -> BirthdayReport:
    """Record today's gifts; the caller dispatches the report's ``queued`` messages."""
    today = as_of.astimezone(loyalty.zone).date()
    channel = loyalty.channel
    born_today = or_(*(and_(extract("month", Customer.birthday) == month,
                            extract("day", Customer.birthday) == day)
                       for month, day in birthdays_celebrated_on(today)))
    report = BirthdayReport()
    with transaction(loyalty.sessions) as session:
        # Inside the transaction: the program in force is the one read at its start.
        recent_gift = exists().where(
            Message.kind == MessageKind.BIRTHDAY, Message.customer_id == Customer.id,
            Message.status != MessageStatus.FAILED,
            Message.created_at > gift_window_start(loyalty.program, as_of))
        rows = session.execute(
            select(Customer, recent_gift.label("recent_gift"), reachable_on(channel))
            .where(born_today).order_by(Customer.id))
        for customer, gifted_lately, reachable in rows:
            report.celebrated += 1
            if gifted_lately:
                report.skipped_recent_gift += 1
                continue
            if not reachable:
                report.unreachable += 1
                continue
            tier = loyalty.program.tier(customer.tier)
            message_id = new_message(
                session, kind=MessageKind.BIRTHDAY, customer=customer, channel=channel,
                text=birthday_text(loyalty.program, tier, customer.name), now=as_of,
                period=today)
            if message_id is not None:
                report.queued.append(message_id)
    return report
