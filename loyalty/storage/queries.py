"""The storage operations services need: row locks, idempotent inserts, read models."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from loyalty.domain.messages import Channel, contact_for
from loyalty.storage.tables import Base, Customer, Order


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


def lock_customer(session: Session, customer_id: str) -> Customer | None:
    """The member row, locked until the transaction ends (a no-op lock on SQLite, where
    BEGIN IMMEDIATE already serialises writers)."""
    return session.scalars(
        select(Customer).where(Customer.id == customer_id).with_for_update()
    ).one_or_none()


def lock_order(session: Session, order_id: str) -> Order | None:
    return session.scalars(
        select(Order).where(Order.order_id == order_id).with_for_update()
    ).one_or_none()


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


def total_spent(session: Session, customer_id: str) -> int:
    """The sum of what each of the member's orders counts (``OrderState.spend``)."""
    return int(session.scalar(select(func.coalesce(func.sum(Order.spend), 0))
                              .where(Order.customer_id == customer_id)) or 0)


def reachable_on(channel: Channel) -> ColumnElement[bool]:
    """Customers who can be reached on ``channel`` (``messages.contact_for``)."""
    return getattr(Customer, contact_for(channel)).is_not(None)
