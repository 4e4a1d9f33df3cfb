"""cross-sell holdout: crosssell_assignments

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('crosssell_assignments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('period', sa.Date(), nullable=False),
    sa.Column('customer_id', sa.String(length=64), nullable=False),
    sa.Column('held_out', sa.Boolean(), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('next_threshold', sa.BigInteger(), nullable=False),
    sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('window_ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('period_ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('period', 'customer_id', name='uq_crosssell_assignment_day')
    )
    with op.batch_alter_table('crosssell_assignments', schema=None) as batch_op:
        batch_op.create_index('ix_crosssell_assignments_customer', ['customer_id', 'assigned_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('crosssell_assignments', schema=None) as batch_op:
        batch_op.drop_index('ix_crosssell_assignments_customer')
    op.drop_table('crosssell_assignments')
