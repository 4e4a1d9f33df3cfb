"""The storage operations services need: row locks, idempotent inserts, read models."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Connection, ScalarSelect, and_, false, func, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from loyalty.domain.channels import calendar_month
from loyalty.domain.messages import NOT_DELIVERED, Channel, MessageKind
from loyalty.program import Program
from loyalty.storage.tables import Base, Customer, Message, Order


def insert_if_absent(session: Session, model: type[Base], values: dict[str, Any],
                     key: list[str], returning: str | None = None) -> Any:
    """INSERT … ON CONFLICT DO NOTHING; the new row's ``returning`` column (its first key
    column by default) when this call created it, else None.

    On PostgreSQL a concurrent insert of the same key waits for the other transaction and
    then does nothing, so the unique key decides who goes first, not a race.
    """
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    table = model.__table__
    # RETURNING, not rowcount: drivers disagree on the rowcount of a skipped insert.
    statement = dialect.insert(table).values(**values).on_conflict_do_nothing(
        index_elements=key).returning(table.c[returning or key[0]])
    return session.execute(statement).scalar()






def spent_by(customer_id: str | ColumnElement[str]) -> ScalarSelect[int]:
    """The sum of what each of the member's orders counts (``OrderState.spend``);
    ``customer_id`` may be a column of an outer query."""
    return select(func.coalesce(func.sum(Order.spend), 0)) \
        .where(Order.customer_id == customer_id).scalar_subquery()


# The PostgreSQL advisory lock that orders program changes against the transactions that
# apply the program (a number of our own; advisory locks are per database).
PROGRAM_LOCK = 0x6C6F79616C7479  # "loyalty"


def share_program_lock(connection: Connection) -> None:
    """Until the transaction ends, no program change can start or be under way. Nothing to
    do on SQLite, where BEGIN IMMEDIATE serialises every transaction already."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"),
                           {"key": PROGRAM_LOCK})


def take_program_lock(connection: Connection) -> None:
    """Wait for every transaction holding the program lock shared; keep others out until
    this one ends."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PROGRAM_LOCK})




def reachable_by(plan: Sequence[Channel]) -> ColumnElement[bool]:
    """Customers with the contact some channel of ``plan`` needs (``channels.recipient``)."""
    contacts = {Customer.phone if channel is Channel.ZNS else Customer.zalo_user_id
                for channel in plan if channel is not Channel.LOG}
    if Channel.LOG in plan:
        contacts |= {Customer.phone, Customer.zalo_user_id}
    return or_(false(), *(column.is_not(None) for column in contacts))


def promotional_in_month(kinds: Collection[str], start: datetime,
                         end: datetime) -> ScalarSelect[int]:
    """The customer's promotional messages (of ``kinds``) queued or sent in ``[start, end)``
    that may have reached them: Zalo counts a message in the month it is sent, we count it
    in that one and in the month it was queued."""
    return select(func.count()).where(
        Message.customer_id == Customer.id, Message.kind.in_(kinds),
        Message.status.not_in(NOT_DELIVERED),
        or_(and_(Message.created_at >= start, Message.created_at < end),
            and_(Message.sent_at >= start, Message.sent_at < end))).scalar_subquery()


def last_order_event() -> ScalarSelect[datetime | None]:
    """When the customer's latest order event happened: the last contact we know of."""
    return select(func.max(Order.occurred_at)).where(
        Order.customer_id == Customer.id).scalar_subquery()


def cap_history(program: Program, now: datetime, zone: ZoneInfo
                ) -> tuple[ScalarSelect[int], ScalarSelect[datetime | None]]:
    """What Zalo's caps look at, per customer (``channels.cap_reason``): their promotional
    messages in this calendar month, and their last order event."""
    kinds = [kind for kind in MessageKind if program.channels.of(kind).promotional]
    return promotional_in_month(kinds, *calendar_month(now, zone)), last_order_event()


# Rows per multi-row INSERT: well under both databases' limit on bound parameters.
_ROWS_PER_INSERT = 1000


def insert_missing(session: Session, model: type[Base], rows: list[dict[str, Any]],
                   key: str) -> list[Any]:
    """INSERT … ON CONFLICT DO NOTHING for many rows; the ``key`` of those this call created.

    On PostgreSQL a concurrent insert of the same key waits for the other transaction and
    then does nothing, so the unique key decides who goes first, not a race.
    """
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    table = model.__table__
    created: list[Any] = []
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        statement = dialect.insert(table).values(rows[start:start + _ROWS_PER_INSERT]) \
            .on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
        created.extend(session.execute(statement).scalars())
    return created
