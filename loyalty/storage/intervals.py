"""A timestamp plus a whole number of seconds, in SQL, exact on both databases.

PostgreSQL adds an interval. SQLite keeps a ``Timestamp`` as text, ``YYYY-MM-DD
HH:MM:SS.ffffff`` in UTC; its date functions work in milliseconds and drop the fraction, so
the whole seconds are shifted by ``datetime()`` and the original fraction is put back: the
result compares as text with other timestamps to the microsecond.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, literal_column
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from loyalty.storage.tables import Timestamp


class shifted(FunctionElement[datetime]):
    """``moment + by`` (whole seconds)."""

    type = Timestamp()
    inherit_cache = True
    name = "shifted"

    def __init__(self, moment: ColumnElement[datetime], by: timedelta):
        seconds = by.total_seconds()
        if seconds != int(seconds):
            raise ValueError(f"whole seconds only, not {by}")
        # Inline, not bound: an integer the program gives, part of the statement's shape.
        super().__init__(moment, literal_column(str(int(seconds))))


def _parts(element: shifted, compiler: SQLCompiler, **kw: Any) -> tuple[str, str]:
    moment, seconds = element.clauses
    return compiler.process(moment, **kw), compiler.process(seconds, **kw)


@compiles(shifted, "postgresql")
def _postgresql(element: shifted, compiler: SQLCompiler, **kw: Any) -> str:
    moment, seconds = _parts(element, compiler, **kw)
    return f"({moment} + make_interval(secs => {seconds}))"


@compiles(shifted, "sqlite")
def _sqlite(element: shifted, compiler: SQLCompiler, **kw: Any) -> str:
    moment, seconds = _parts(element, compiler, **kw)
    sign = "" if seconds.startswith("-") else "+"
    return f"(datetime(substr({moment}, 1, 19), '{sign}{seconds} seconds') || substr({moment}, 20))"
