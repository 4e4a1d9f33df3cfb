"""zalo_links (a verified Zalo identity → customer) and the lookups sign-in needs

Revision ID: 0007
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('zalo_links',
    sa.Column('zalo_id', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=64), nullable=True),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('linked_by', sa.String(length=16), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("linked_by IN ('oa_user_id', 'phone')", name='ck_zalo_link_by'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('zalo_id')
    )
    with op.batch_alter_table('zalo_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_zalo_links_customer_id'), ['customer_id'], unique=False)
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.create_index('ix_customers_phone', ['phone'], unique=False)
        batch_op.create_index('ix_customers_zalo_user_id', ['zalo_user_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_index('ix_customers_zalo_user_id')
        batch_op.drop_index('ix_customers_phone')
    with op.batch_alter_table('zalo_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_zalo_links_customer_id'))
    op.drop_table('zalo_links')
