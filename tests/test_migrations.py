"""Migration 0005 on a database that has history: what was there keeps its meaning, the schema
is the models', and the ledger stays append-only."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from loyalty.bootstrap import Loyalty
from loyalty.settings import Settings
from loyalty.storage.migrate import alembic_config
from loyalty.storage.tables import Base

BEFORE = [
    "INSERT INTO customers VALUES ('C1', NULL, NULL, NULL, NULL, 'silver', 1220, "
    "'2026-01-01', '2026-01-01')",
    "INSERT INTO orders (order_id, customer_id, status, payment_status, total_payable, "
    "shipping_fee, placed_at, occurred_at, earned, reversed, updated_at, spend) VALUES "
    "('O1', 'C1', 'delivered', 'refunded', 1250000, 30000, '2026-01-01', '2026-01-01', "
    "true, false, '2026-01-01', 1220000)",
    "INSERT INTO ledger_entries (id, customer_id, kind, points, order_id, tier, multiplier, "
    "balance_after, created_at) VALUES (1, 'C1', 'order_credit', 1220, 'O1', 'member', '1.0', "
    "1220, '2026-01-01')",
    "INSERT INTO tier_changes (customer_id, from_tier, to_tier, points, ledger_entry_id, "
    "changed_at) VALUES ('C1', 'member', 'silver', 1220, 1, '2026-01-01')",
]


def test_0005_keeps_history_matches_the_models_and_can_be_undone(
        empty_database: Settings) -> None:
    loyalty = Loyalty.from_settings(empty_database)
    url = loyalty.engine.url.render_as_string(hide_password=False)
    config = alembic_config(url)
    try:
        command.upgrade(config, "0003")
        with loyalty.engine.begin() as connection:
            for statement in BEFORE:
                connection.execute(text(statement))
        command.upgrade(config, "head")
        with loyalty.engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
            # An order that earned keeps its past: its earning amount from its amounts, and
            # no refund read into it (it was delivered/refunded under the old rules).
            assert connection.execute(text(
                "SELECT earning, refunded, refunded_status, spend FROM orders")).one() == (
                1_220_000, 0, False, 1_220_000)
            assert connection.execute(text(
                "SELECT reason, ledger_entry_id FROM tier_changes")).one() == ("points", 1)
            for statement in ("UPDATE ledger_entries SET points = 1",
                              "DELETE FROM ledger_entries"):
                try:
                    with connection.begin_nested():
                        connection.execute(text(statement))
                except Exception as refused:
                    assert "append-only" in str(refused)
                else:
                    raise AssertionError(f"the ledger allowed {statement}")
            connection.rollback()
        command.downgrade(config, "0003")
        command.upgrade(config, "head")
    finally:
        loyalty.engine.dispose()
