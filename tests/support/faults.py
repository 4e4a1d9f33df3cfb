"""Faults injected into the database of a test run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from loyalty.bootstrap import Loyalty

INJECTED = "injected failure for the test"


@contextmanager
def failing_writes(loyalty: Loyalty, table: str, operation: str, condition: str, *,
                   sqlstate: str = "55P03") -> Iterator[None]:
    """Writes to ``table`` that match ``condition`` fail in the database with an error that
    names no value. On PostgreSQL ``sqlstate`` says which: 55P03 (a lock timeout) is an
    outage that callers retry, P0001 an error they do not expect; SQLite aborts (a broken
    constraint)."""
    postgres = loyalty.engine.dialect.name == "postgresql"
    with loyalty.engine.begin() as connection:
        if postgres:
            connection.execute(text(
                "CREATE FUNCTION loyalty_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN RAISE EXCEPTION '{INJECTED}' USING ERRCODE = '{sqlstate}'; END $$"))
            connection.execute(text(
                f"CREATE TRIGGER loyalty_test_fail BEFORE {operation} ON {table} FOR EACH ROW "
                f"WHEN ({condition}) EXECUTE FUNCTION loyalty_test_fail()"))
        else:
            connection.execute(text(
                f"CREATE TRIGGER loyalty_test_fail BEFORE {operation} ON {table} "
                f"WHEN {condition} BEGIN SELECT RAISE(ABORT, '{INJECTED}'); END"))
    try:
        yield
    finally:
        with loyalty.engine.begin() as connection:
            if postgres:
                connection.execute(text(f"DROP TRIGGER loyalty_test_fail ON {table}"))
                connection.execute(text("DROP FUNCTION loyalty_test_fail()"))
            else:
                connection.execute(text("DROP TRIGGER loyalty_test_fail"))
