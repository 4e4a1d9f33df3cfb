"""Wiring: settings, program and database for one process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from loyalty.program import Program, load_program
from loyalty.settings import Settings, get_settings
from loyalty.storage.db import database_url, make_engine, make_session_factory


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Loyalty:
    settings: Settings
    program: Program
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Callable[[], datetime] = field(default=utc_now)

    @classmethod
    def from_settings(cls, settings: Settings) -> Loyalty:
        # The program is read first: a bad file stops start-up before anything connects.
        program = load_program(settings.program_file)
        engine = make_engine(database_url(settings))
        return cls(settings, program, engine, make_session_factory(engine))


@lru_cache
def get_loyalty() -> Loyalty:
    return Loyalty.from_settings(get_settings())
