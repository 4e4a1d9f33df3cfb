"""The daily birthday job: a message with the tier's gift, at most once in 365 days."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import extract, func, select

from loyalty.bootstrap import Loyalty
from loyalty.domain.birthdays import birthday_text, is_birthday, may_receive_gift
from loyalty.services.channels import channel_for
from loyalty.services.messaging import new_message
from loyalty.storage.db import transaction
from loyalty.storage.tables import Customer, Message


@dataclass
class BirthdayReport:
    celebrated: int = 0
    queued: list[int] = field(default_factory=list)
    skipped_recent_gift: int = 0
    unreachable: int = 0


def run_birthdays(loyalty: Loyalty, as_of: datetime) -> BirthdayReport:
    zone = ZoneInfo(loyalty.settings.timezone)
    today = as_of.astimezone(zone).date()
    channel = channel_for(loyalty.settings)
    report = BirthdayReport()
    with transaction(loyalty.sessions) as session:
        # Today's month, plus 29 February on 28 February; is_birthday has the last word.
        days = [today.day] + ([29] if (today.month, today.day) == (2, 28) else [])
        born_today = session.scalars(select(Customer).where(
            extract("month", Customer.birthday) == today.month,
            extract("day", Customer.birthday).in_(days)).order_by(Customer.id))
        for customer in born_today:
            assert customer.birthday is not None
            if not is_birthday(customer.birthday, today):
                continue
            report.celebrated += 1
            last_gift = session.scalar(select(func.max(Message.created_at)).where(
                Message.kind == "birthday", Message.customer_id == customer.id,
                Message.status != "failed"))
            if not may_receive_gift(loyalty.program, last_gift, as_of):
                report.skipped_recent_gift += 1
                continue
            if not (customer.phone if channel == "zns" else customer.zalo_user_id):
                report.unreachable += 1
                continue
            tier = loyalty.program.tier(customer.tier)
            message_id = new_message(
                session, kind="birthday", customer=customer, channel=channel,
                text=birthday_text(loyalty.program, tier, customer.name), now=as_of,
                period=today)
            if message_id is not None:
                report.queued.append(message_id)
    return report
