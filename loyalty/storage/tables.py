"""The database schema. Guards against double effects live here as constraints."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite assigns ids only to a column typed exactly INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Timestamp(TypeDecorator[datetime]):
    """An aware UTC time on both databases (SQLite drops offsets; this puts UTC back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a timestamp column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    phone: Mapped[str | None] = mapped_column(String(20))
    zalo_user_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    birthday: Mapped[date | None] = mapped_column(Date)
    tier: Mapped[str] = mapped_column(String(32))
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(Timestamp())
    updated_at: Mapped[datetime] = mapped_column(Timestamp())

    __table_args__ = (
        # The daily scan selects point ranges below each threshold through this index.
        Index("ix_customers_points", "points"),
    )


class Order(Base):
    """An order's latest known state (SPEC §3) and whether it earned or gave back points."""

    __tablename__ = "orders"

    order_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    payment_status: Mapped[str] = mapped_column(String(16))
    total_payable: Mapped[int] = mapped_column(BigInteger)
    shipping_fee: Mapped[int] = mapped_column(BigInteger)
    placed_at: Mapped[datetime] = mapped_column(Timestamp())
    occurred_at: Mapped[datetime] = mapped_column(Timestamp())
    earned: Mapped[bool] = mapped_column(default=False)
    reversed: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(Timestamp())


LEDGER_KINDS = ("order_credit", "order_reversal", "crosssell_bonus", "crosssell_bonus_reversal")


class LedgerEntry(Base):
    """Append-only: a database trigger refuses UPDATE and DELETE on this table."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    kind: Mapped[str] = mapped_column(String(32))
    points: Mapped[int] = mapped_column(BigInteger)
    order_id: Mapped[str | None] = mapped_column(String(128))
    nudge_id: Mapped[int | None] = mapped_column(BigInteger)
    tier: Mapped[str] = mapped_column(String(32))
    # The exact decimal text ("1.2"), never a float.
    multiplier: Mapped[str] = mapped_column(String(16))
    balance_after: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(Timestamp())

    __table_args__ = (
        # An order is credited once and taken back once, ever; a nudge pays one bonus.
        UniqueConstraint("order_id", "kind", name="uq_ledger_order_kind"),
        UniqueConstraint("nudge_id", "kind", name="uq_ledger_nudge_kind"),
        CheckConstraint("kind IN ('" + "', '".join(LEDGER_KINDS) + "')",
                        name="ck_ledger_kind"),
        Index("ix_ledger_customer", "customer_id", "id"),
    )


class TierChange(Base):
    __tablename__ = "tier_changes"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    from_tier: Mapped[str] = mapped_column(String(32))
    to_tier: Mapped[str] = mapped_column(String(32))
    points: Mapped[int] = mapped_column(BigInteger)
    ledger_entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"))
    changed_at: Mapped[datetime] = mapped_column(Timestamp())


class ProcessedEvent(Base):
    """Every event id applied once; a second delivery finds its row and does nothing."""

    __tablename__ = "processed_events"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16))
    processed_at: Mapped[datetime] = mapped_column(Timestamp())


class RejectedEvent(Base):
    """An event that was refused, kept with its reason so that ops can list and replay it."""

    __tablename__ = "rejected_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    event_id: Mapped[str | None] = mapped_column(String(128), index=True)
    source: Mapped[str] = mapped_column(String(16))
    payload: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(Timestamp())
    replayed_at: Mapped[datetime | None] = mapped_column(Timestamp())
    replay_outcome: Mapped[str | None] = mapped_column(String(32))
