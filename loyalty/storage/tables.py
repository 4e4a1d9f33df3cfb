"""The database schema. Guards against double effects live here as constraints."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
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
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from loyalty.domain.messages import AttemptOutcome, MessageKind, MessageStatus
from loyalty.domain.points import LedgerKind
from loyalty.domain.tiers import TierChangeReason

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
        # A signed-in member is found by the OA user id Zalo tells, or by phone.
        Index("ix_customers_zalo_user_id", "zalo_user_id"),
        Index("ix_customers_phone", "phone"),
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
    # The earning amount of the event that earned (``OrderState.earning``).
    earning: Mapped[int | None] = mapped_column(BigInteger)
    # The largest refunded_amount seen, and whether an event said payment_status refunded.
    refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_status: Mapped[bool] = mapped_column(default=False)
    # What the order counts towards the member's total_spent (``OrderState.spend``).
    spend: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(Timestamp())


def _one_of(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ('" + "', '".join(values) + "')"


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
    # An order_refund row: the cumulative refunded amount (VND) it brings the order to.
    refunded_to: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(Timestamp())

    __table_args__ = (
        # An order is credited once and taken back once, ever; a nudge pays one bonus.
        Index("uq_ledger_order_kind", "order_id", "kind", unique=True,
              postgresql_where=text(f"kind <> '{LedgerKind.ORDER_REFUND}'"),
              sqlite_where=text(f"kind <> '{LedgerKind.ORDER_REFUND}'")),
        # An order may be refunded in steps, but each cumulative amount is taken back once:
        # a second worker, or a redelivery, computing the same step collides here.
        UniqueConstraint("order_id", "kind", "refunded_to", name="uq_ledger_order_refund"),
        CheckConstraint(f"(kind = '{LedgerKind.ORDER_REFUND}') = (refunded_to IS NOT NULL)",
                        name="ck_ledger_refunded_to"),
        UniqueConstraint("nudge_id", "kind", name="uq_ledger_nudge_kind"),
        CheckConstraint(_one_of("kind", LedgerKind), name="ck_ledger_kind"),
        Index("ix_ledger_customer", "customer_id", "id"),
    )


class TierChange(Base):
    """The tier history: a move caused by a ledger row, or by a change of the program."""

    __tablename__ = "tier_changes"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    from_tier: Mapped[str] = mapped_column(String(32))
    to_tier: Mapped[str] = mapped_column(String(32))
    points: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(32), default=TierChangeReason.POINTS)
    ledger_entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    program_version: Mapped[int | None] = mapped_column(ForeignKey("program_versions.version"))
    changed_at: Mapped[datetime] = mapped_column(Timestamp())

    __table_args__ = (
        CheckConstraint(
            f"(reason = '{TierChangeReason.POINTS}' AND ledger_entry_id IS NOT NULL) OR "
            f"(reason = '{TierChangeReason.PROGRAM_CHANGE}' AND program_version IS NOT NULL)",
            name="ck_tier_change_cause"),
    )


class ProgramVersion(Base):
    """Every program that was put in force, newest last (SPEC §2 "program change")."""

    __tablename__ = "program_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # The whole program as JSON (``program.program_document``).
    program: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The file it was read from, or "defaults".
    source: Mapped[str] = mapped_column(Text)
    applied_at: Mapped[datetime] = mapped_column(Timestamp())
    moved_up: Mapped[int] = mapped_column(Integer)
    moved_down: Mapped[int] = mapped_column(Integer)


class ProcessedEvent(Base):
    """Every event id applied once; a second delivery finds its row and does nothing."""

    __tablename__ = "processed_events"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16))
    # SHA-256 of the event's content: the same id with other content is a sender's bug.
    digest: Mapped[str | None] = mapped_column(String(64))
    # Later deliveries of the same event id: harmless, but worth seeing on a dashboard.
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
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


class Message(Base):
    """The outbox: a message is recorded before it is tried and its result after.

    A nudge is a message of kind ``nudge``; its id is the nudge id the bonus refers to.
    """

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    # The day a nudge or a birthday gift belongs to (local date): one of each per day.
    period: Mapped[date | None] = mapped_column(Date)
    order_id: Mapped[str | None] = mapped_column(String(128))
    # The channel of the latest attempt, the one that carried it once sent; None until tried.
    channel: Mapped[str | None] = mapped_column(String(16))
    recipient: Mapped[str | None] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    # The values in the text, by placeholder: the template channels' data.
    fields: Mapped[dict[str, str] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=MessageStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime | None] = mapped_column(Timestamp())
    enqueued_at: Mapped[datetime | None] = mapped_column(Timestamp())
    created_at: Mapped[datetime] = mapped_column(Timestamp())
    updated_at: Mapped[datetime] = mapped_column(Timestamp())
    sent_at: Mapped[datetime | None] = mapped_column(Timestamp())
    provider_message_id: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    # Why a skipped message was never tried (``channels.SkipReason``).
    skip_reason: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        # A scan run twice, or by two beats at once, adds no second nudge for the day.
        UniqueConstraint("kind", "customer_id", "period", name="uq_message_period"),
        # One notice per reversed order.
        UniqueConstraint("kind", "order_id", name="uq_message_order"),
        CheckConstraint(_one_of("kind", MessageKind), name="ck_message_kind"),
        CheckConstraint(_one_of("status", MessageStatus), name="ck_message_status"),
        Index("ix_messages_customer_kind", "customer_id", "kind", "created_at"),
        Index("ix_messages_status", "status", "not_before"),
    )


class MessageAttempt(Base):
    """One call to one channel for one message, written before the call and completed
    with its outcome after it: the journal of the message's channel plan."""

    __tablename__ = "message_attempts"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    attempted_at: Mapped[datetime] = mapped_column(Timestamp())
    outcome: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(_one_of("outcome", AttemptOutcome), name="ck_attempt_outcome"),
    )


class CustomerTag(Base):
    """A tag on a member (``Đã gửi tin``); the database is the source of truth."""

    __tablename__ = "customer_tags"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    name: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), unique=True)
    set_at: Mapped[datetime] = mapped_column(Timestamp())
    expires_at: Mapped[datetime] = mapped_column(Timestamp())
    cleared_at: Mapped[datetime | None] = mapped_column(Timestamp())

    __table_args__ = (
        Index("ix_tags_customer", "customer_id", "expires_at"),
        # The sweep looks for live tags whose time is up.
        Index("ix_tags_due", "expires_at", "cleared_at"),
    )


class CampaignRun(Base):
    __tablename__ = "campaign_runs"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    campaign: Mapped[str] = mapped_column(String(32))
    as_of: Mapped[datetime] = mapped_column(Timestamp())
    period: Mapped[date] = mapped_column(Date)
    dry_run: Mapped[bool] = mapped_column(default=False)
    selected: Mapped[int] = mapped_column(Integer)
    queued: Mapped[int] = mapped_column(Integer)
    unreachable: Mapped[int] = mapped_column(Integer)
    # Members skipped for Zalo's caps on promotional messages.
    over_monthly_cap: Mapped[int] = mapped_column(Integer, default=0)
    no_recent_contact: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(Timestamp())


class CrosssellAssignment(Base):
    """A member a cross-sell scan selected, and the group the holdout put them in: nudged or
    held out (``domain.holdout``). One per member per campaign day."""

    __tablename__ = "crosssell_assignments"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    # The campaign day (local date) of the scan.
    period: Mapped[date] = mapped_column(Date)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    held_out: Mapped[bool] = mapped_column()
    # Where the member stood when selected: "reached the next tier" means these points.
    points: Mapped[int] = mapped_column(BigInteger)
    next_threshold: Mapped[int] = mapped_column(BigInteger)
    assigned_at: Mapped[datetime] = mapped_column(Timestamp())
    # The member's windows, from the scan: 72 h for a conversion, the tag period for the
    # tier (``domain.campaign_results.windows_end``), fixed by the program of the day.
    window_ends_at: Mapped[datetime] = mapped_column(Timestamp())
    period_ends_at: Mapped[datetime] = mapped_column(Timestamp())

    __table_args__ = (
        # A scan run twice on one day, or by two beats at once, assigns nobody twice; the
        # report reads a range of days through it.
        UniqueConstraint("period", "customer_id", name="uq_crosssell_assignment_day"),
        # The scan keeps a member held out lately out, as it does one nudged lately.
        Index("ix_crosssell_assignments_customer", "customer_id", "assigned_at"),
    )


class ZaloToken(Base):
    """The current OA token pair; refresh tokens are single-use, so it is saved before use.

    Both tokens are Fernet ciphertext; ``encrypted`` is false only for a pair stored in
    clear before migration 0010, until it is next read.
    """

    __tablename__ = "zalo_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    access_token: Mapped[str] = mapped_column(Text)
    refresh_token: Mapped[str] = mapped_column(Text)
    encrypted: Mapped[bool] = mapped_column(Boolean, server_default=false())
    expires_at: Mapped[datetime] = mapped_column(Timestamp())
    updated_at: Mapped[datetime] = mapped_column(Timestamp())


class ZaloLink(Base):
    """A verified Zalo identity (the user's id for the Mini App's Zalo app) and the customer
    it is; Zalo gives one person another id per app and per OA, so the link is kept here.

    ``customer_id`` is empty while the link waits for a customer: a phone number shared
    before any order with it arrived.
    """

    __tablename__ = "zalo_links"

    zalo_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"), index=True)
    # The number Zalo gave for a getPhoneNumber code, normalised as ZNS wants it (84…).
    phone: Mapped[str | None] = mapped_column(String(20))
    linked_by: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(Timestamp())
    updated_at: Mapped[datetime] = mapped_column(Timestamp())

    __table_args__ = (
        CheckConstraint("linked_by IN ('oa_user_id', 'phone')", name="ck_zalo_link_by"),
    )
