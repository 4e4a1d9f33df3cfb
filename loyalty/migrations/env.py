"""Alembic environment: the URL comes from the caller (``loyalty db upgrade``)."""

from __future__ import annotations

from alembic import context

from loyalty.storage.db import make_engine
from loyalty.storage.tables import Base

url = context.config.get_main_option("sqlalchemy.url")
assert url, "loyalty.migrate sets sqlalchemy.url"

engine = make_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
engine.dispose()
