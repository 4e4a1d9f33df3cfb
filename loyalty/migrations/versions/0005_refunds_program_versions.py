"""refunds (order_refund rows, an order's earning amount and refunds) and program versions
(the program in force, tier history rows caused by a program change)

Revision ID: 0005
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0003'
branch_labels = None
depends_on = None

KINDS = ('order_credit', 'order_reversal', 'crosssell_bonus', 'crosssell_bonus_reversal')
REFUND = 'order_refund'


def _kinds(kinds: tuple[str, ...]) -> str:
    return "kind IN ('" + "', '".join(kinds) + "')"


# A table rebuild (SQLite's batch mode) drops the ledger's append-only triggers with the old
# table; they are put back on the new one (the same guard as revision 0001).
LEDGER_GUARD_SQLITE = (
    "CREATE TRIGGER ledger_no_{op} BEFORE {OP} ON ledger_entries "
    "BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END"
)


def _guard_ledger_again() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("update", "delete"):
            op.execute(LEDGER_GUARD_SQLITE.format(op=name, OP=name.upper()))


def upgrade() -> None:
    op.create_table('program_versions',
    sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('program', sa.JSON(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('moved_up', sa.Integer(), nullable=False),
    sa.Column('moved_down', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('version')
    )

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('earning', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('refunded', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('refunded_status', sa.Boolean(), nullable=False, server_default=sa.false()))
    # Orders that earned before this revision: the amounts of their latest state, the best
    # there is. No refund is read into their past: the rule applies to events from now on.
    op.execute("UPDATE orders SET earning = CASE WHEN total_payable > shipping_fee "
               "THEN total_payable - shipping_fee ELSE 0 END WHERE earned")

    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refunded_to', sa.BigInteger(), nullable=True))
        batch_op.drop_constraint('uq_ledger_order_kind', type_='unique')
        batch_op.drop_constraint('ck_ledger_kind', type_='check')
        batch_op.create_check_constraint('ck_ledger_kind', _kinds((*KINDS, REFUND)))
        batch_op.create_check_constraint(
            'ck_ledger_refunded_to', f"(kind = '{REFUND}') = (refunded_to IS NOT NULL)")
        batch_op.create_unique_constraint('uq_ledger_order_refund', ['order_id', 'kind', 'refunded_to'])
    # Credited once and taken back once, ever, as before; refunds are unique per step above.
    op.create_index('uq_ledger_order_kind', 'ledger_entries', ['order_id', 'kind'], unique=True,
                    postgresql_where=sa.text(f"kind <> '{REFUND}'"),
                    sqlite_where=sa.text(f"kind <> '{REFUND}'"))
    _guard_ledger_again()

    with op.batch_alter_table('tier_changes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sa.String(length=32), nullable=False, server_default='points'))
        batch_op.add_column(sa.Column('program_version', sa.Integer(), nullable=True))
        batch_op.alter_column('ledger_entry_id', existing_type=sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True)
        batch_op.create_foreign_key('tier_changes_program_version_fkey', 'program_versions', ['program_version'], ['version'])
        batch_op.create_check_constraint(
            'ck_tier_change_cause',
            "(reason = 'points' AND ledger_entry_id IS NOT NULL) OR "
            "(reason = 'program change' AND program_version IS NOT NULL)")


def downgrade() -> None:
    bind = op.get_bind()
    # The ledger is append-only: rows of the new kind cannot be taken out, so the old
    # constraints could not hold.
    if bind.scalar(sa.text(f"SELECT count(*) FROM ledger_entries WHERE kind = '{REFUND}'")):
        raise RuntimeError("the ledger holds order_refund rows; revision 0005 cannot be undone")
    op.execute("DELETE FROM tier_changes WHERE reason <> 'points'")
    with op.batch_alter_table('tier_changes', schema=None) as batch_op:
        batch_op.drop_constraint('ck_tier_change_cause', type_='check')
        batch_op.drop_constraint('tier_changes_program_version_fkey', type_='foreignkey')
        batch_op.alter_column('ledger_entry_id', existing_type=sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False)
        batch_op.drop_column('program_version')
        batch_op.drop_column('reason')

    op.drop_index('uq_ledger_order_kind', table_name='ledger_entries')
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_constraint('uq_ledger_order_refund', type_='unique')
        batch_op.drop_constraint('ck_ledger_refunded_to', type_='check')
        batch_op.drop_constraint('ck_ledger_kind', type_='check')
        batch_op.create_check_constraint('ck_ledger_kind', _kinds(KINDS))
        batch_op.create_unique_constraint('uq_ledger_order_kind', ['order_id', 'kind'])
        batch_op.drop_column('refunded_to')
    _guard_ledger_again()

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('refunded_status')
        batch_op.drop_column('refunded')
        batch_op.drop_column('earning')
    op.drop_table('program_versions')
