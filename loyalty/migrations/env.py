"""Alembic environment: the URL comes from the caller (``loyalty db upgrade``)."""

from __future__ import annotations

from alembic import context

from loyalty.storage.db import make_engine
from loyalty.storage.tables import Base

url = context.config.get_main_option("sqlalchemy.url")
assert url, "loyalty.migrate sets sqlalchemy.url"

engine = make_engine(url)
with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # A batch-mode rebuild drops a table that others refer to (the ledger, which tier
        # history rows name), which SQLite allows only with foreign keys off. The pragma
        # works outside a transaction only: on the driver's connection, before the BEGIN.
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=sqlite)
    with context.begin_transaction():
        context.run_migrations()
        if sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"foreign keys broken by the migration: {broken[:10]}")
    connection.commit()
engine.dispose()
