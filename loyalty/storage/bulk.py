"""Set-wise writes: many rows in one round trip, and ids known before the rows are written.

On PostgreSQL large inserts go through ``COPY``; otherwise one ``executemany`` (SQLAlchemy
sends it as multi-row ``INSERT … VALUES``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.orm import Session

# Below this many rows COPY's own set-up costs more than it saves.
COPY_FROM = 2_000


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def allocate_ids(session: Session, table: Table, count: int) -> list[int]:
    """``count`` fresh ids for ``table``'s ``id`` column, so that rows can refer to each
    other before they are written.

    On PostgreSQL they come from the column's sequence. SQLite hands out max(id) + 1; every
    SQLite transaction here starts with ``BEGIN IMMEDIATE``, so no other writer can take
    the same ids meanwhile.
    """
    if count == 0:
        return []
    if is_postgresql(session):
        return list(session.scalars(
            text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) "
                 "FROM generate_series(1, :count)"),
            {"table": table.name, "count": count}))
    top = session.scalar(select(func.coalesce(func.max(table.c.id), 0)))
    return list(range(top + 1, top + 1 + count))


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys) set-wise."""
    if not rows:
        return
    if len(rows) >= COPY_FROM and is_postgresql(session):
        _copy(session, table, rows)
        return
    session.execute(insert(table), list(rows))


def _copy(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    columns = list(rows[0])
    types = [table.c[name].type for name in columns]
    dialect = session.get_bind().dialect
    processors = [kind.bind_processor(dialect) for kind in types]
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    names = ", ".join(f'"{name}"' for name in columns)
    with cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row([value if process is None else process(value)
                            for value, process in zip((row[name] for name in columns),
                                                      processors, strict=True)])
