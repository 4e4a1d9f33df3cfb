"""The daily birthday job: a message with the tier's gift, at most once in 365 days."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, exists, extract, or_, select

from loyalty.domain.birthdays import birthday_fields, birthdays_celebrated_on, gift_window_start
from loyalty.domain.channels import cap_reason
from loyalty.domain.messages import NOT_DELIVERED, MessageKind
from loyalty.services.outbox import new_message
from loyalty.storage.db import transaction
from loyalty.storage.queries import cap_history, reachable_by
from loyalty.storage.tables import Customer, Message

if TYPE_CHECKING:
    from loyalty.bootstrap import Loyalty


@dataclass
class BirthdayReport:
    celebrated: int = 0
    queued: list[int] = field(default_factory=list)
    skipped_recent_gift: int = 0
    unreachable: int = 0
    # Skipped for Zalo's caps, when the program makes birthday gifts promotional.
    capped: int = 0


def run_birthdays(loyalty: Loyalty, as_of: datetime) -> BirthdayReport:
    """Record today's gifts; the caller dispatches the report's ``queued`` messages."""
    today = as_of.astimezone(loyalty.zone).date()
    born_today = or_(*(and_(extract("month", Customer.birthday) == month,
                            extract("day", Customer.birthday) == day)
                       for month, day in birthdays_celebrated_on(today)))
    report = BirthdayReport()
    with transaction(loyalty.sessions) as session:
        # Inside the transaction: the program in force is the one read at its start.
        program = loyalty.program
        recent_gift = exists().where(
            Message.kind == MessageKind.BIRTHDAY, Message.customer_id == Customer.id,
            Message.status.not_in(NOT_DELIVERED),
            Message.created_at > gift_window_start(program, as_of))
        rows = session.execute(
            select(Customer, recent_gift.label("recent_gift"),
                   reachable_by(loyalty.plan(MessageKind.BIRTHDAY)),
                   *cap_history(program, as_of, loyalty.zone))
            .where(born_today).order_by(Customer.id))
        for customer, gifted_lately, reachable, this_month, last_contact in rows:
            report.celebrated += 1
            if gifted_lately:
                report.skipped_recent_gift += 1
                continue
            if not reachable:
                report.unreachable += 1
                continue
            if cap_reason(program.channels.birthday, program, now=as_of,
                          promotional_this_month=this_month, last_contact=last_contact):
                report.capped += 1
                continue
            fields = birthday_fields(program.tier(customer.tier), customer.name)
            message_id = new_message(session, program, kind=MessageKind.BIRTHDAY,
                                     customer=customer, fields=fields, now=as_of, period=today)
            if message_id is not None:
                report.queued.append(message_id)
    return report
