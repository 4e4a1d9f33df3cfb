"""orders.spend (an order's share of total_spent) and processed_events.digest

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('spend', sa.BigInteger(), nullable=False, server_default='0'))
    # What the rule of the time counted: total_payable - shipping_fee (never below 0) for
    # orders that earned and were not reversed.
    op.execute("UPDATE orders SET spend = CASE WHEN total_payable > shipping_fee "
               "THEN total_payable - shipping_fee ELSE 0 END "
               "WHERE earned AND NOT reversed")
    with op.batch_alter_table('processed_events', schema=None) as batch_op:
        # Events processed before this revision have no digest and are not compared.
        batch_op.add_column(sa.Column('digest', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('processed_events', schema=None) as batch_op:
        batch_op.drop_column('digest')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('spend')
