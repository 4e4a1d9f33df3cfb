"""The program in force, and changing it (SPEC §2 "program change").

Before any program is stored, the program in force is the configured one (the settings'
file, or the defaults). ``apply_program`` records a program as a new version and
re-evaluates every member's tier under its thresholds, in one transaction; from then on the
newest stored version is in force in every process.

Every transaction of a process (``Loyalty.sessions``) starts with ``ProgramInForce.on_begin``:
on PostgreSQL it takes the program lock shared, then it compares the newest stored version
with the one this process holds and reloads it when it changed. ``apply_program`` takes the
same lock exclusively, so it waits for the transactions under way (order events, the scan)
to finish, and they wait for it: no event is applied, and no scan runs, across a change. On
SQLite every transaction is BEGIN IMMEDIATE, which serialises them all already.

So a transaction must never be opened while the same thread holds another one open: the
inner one would queue behind a waiting change that waits for the outer one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, case, func, insert, literal, select, update
from sqlalchemy.orm import Session, SessionTransaction

from loyalty.domain.tiers import TierChangeReason, move_direction, tier_floors
from loyalty.program import Program, parse_program, program_document
from loyalty.storage.db import transaction
from loyalty.storage.queries import share_program_lock, take_program_lock
from loyalty.storage.tables import Customer, ProgramVersion, TierChange, Timestamp

if TYPE_CHECKING:
    from loyalty.bootstrap import Loyalty

DEFAULTS = "defaults"


@dataclass(frozen=True)
class InForce:
    program: Program
    # None: no program is stored yet, and the configured one is in force.
    version: int | None
    applied_at: datetime | None
    # The file the program was read from, or "defaults".
    source: str


class ProgramInForce:
    """The program this process applies, kept up to date at the start of every
    transaction."""

    def __init__(self, configured: Program, source: str):
        self.configured = InForce(configured, None, None, source)
        self.current = self.configured

    @property
    def program(self) -> Program:
        return self.current.program

    def on_begin(self, session: Session, transaction: SessionTransaction,
                 connection: Connection) -> None:
        """The session's ``after_begin`` hook (a savepoint is not a new transaction)."""
        if not transaction.nested:
            share_program_lock(connection)
            self.refresh(connection)

    def refresh(self, connection: Connection) -> InForce:
        """The newest stored version, read again only when it is not the one held."""
        newest = connection.execute(
            select(ProgramVersion.version, ProgramVersion.applied_at)
            .order_by(ProgramVersion.version.desc()).limit(1)).first()
        held = self.current
        if newest is None:
            self.current = self.configured
        elif (newest.version, newest.applied_at) != (held.version, held.applied_at):
            row = connection.execute(
                select(ProgramVersion.program, ProgramVersion.source)
                .where(ProgramVersion.version == newest.version)).one()
            self.current = InForce(parse_program(row.program), newest.version,
                                   newest.applied_at, row.source)
        return self.current


def program_in_force(loyalty: Loyalty) -> InForce:
    """The program in force now, read from the database."""
    with transaction(loyalty.sessions):
        return loyalty.programs.current


@dataclass(frozen=True)
class ChangeReport:
    version: int
    moved_up: int = 0
    moved_down: int = 0
    # The program given is the one in force already: nothing was recorded or moved.
    unchanged: bool = False


def apply_program(loyalty: Loyalty, program: Program, source: str) -> ChangeReport:
    """Put ``program`` in force: record it as the next version and move every member to the
    tier its thresholds give, with a tier history row (reason ``program change``) for each
    member who moves. Points never change. One transaction, under the program lock."""
    now = loyalty.clock()
    with loyalty.engine.begin() as connection:
        take_program_lock(connection)
        held = loyalty.programs.refresh(connection)
        if held.version is not None and held.program == program:
            return ChangeReport(held.version, unchanged=True)
        version = (held.version or 0) + 1
        connection.execute(insert(ProgramVersion).values(
            version=version, program=program_document(program), source=source,
            applied_at=now, moved_up=0, moved_down=0))
        up, down = _reevaluate_tiers(connection, held.program, program, version, now)
        connection.execute(update(ProgramVersion).where(ProgramVersion.version == version)
                           .values(moved_up=up, moved_down=down))
    return ChangeReport(version, up, down)


def adopt_configured(loyalty: Loyalty) -> ChangeReport:
    """At ``loyalty db upgrade``: the configured program is put in force when none is stored
    yet or the stored one differs from it."""
    configured = loyalty.programs.configured
    return apply_program(loyalty, configured.program, configured.source)


def _reevaluate_tiers(connection: Connection, before: Program, after: Program, version: int,
                      now: datetime) -> tuple[int, int]:
    """Every member's tier under ``after``, set-based; returns how many moved up and down."""
    *higher, (_, first) = tier_floors(after)
    new_tier = case(*((Customer.points >= threshold, code) for threshold, code in higher),
                    else_=literal(first))
    moves = Customer.tier != new_tier
    at: Any = literal(now, Timestamp())
    connection.execute(insert(TierChange).from_select(
        ["customer_id", "from_tier", "to_tier", "points", "reason", "program_version",
         "changed_at"],
        select(Customer.id, Customer.tier, new_tier, Customer.points,
               literal(TierChangeReason.PROGRAM_CHANGE.value), literal(version), at)
        .where(moves)))
    connection.execute(update(Customer).where(moves).values(tier=new_tier, updated_at=at))
    up = down = 0
    for from_tier, to_tier, members in connection.execute(
            select(TierChange.from_tier, TierChange.to_tier, func.count())
            .where(TierChange.program_version == version)
            .group_by(TierChange.from_tier, TierChange.to_tier)):
        direction = move_direction(before, after, from_tier, to_tier)
        up += members if direction > 0 else 0
        down += members if direction < 0 else 0
    return up, down
