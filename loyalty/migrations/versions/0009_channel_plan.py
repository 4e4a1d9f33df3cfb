"""channel plan: message attempts, message fields and skips, campaign cap counts

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

STATUSES_BEFORE = "status IN ('pending', 'sending', 'sent', 'failed', 'held', 'unknown')"
STATUSES = ("status IN ('pending', 'sending', 'sent', 'failed', 'held', 'skipped', "
            "'unknown')")


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fields', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('skip_reason', sa.String(length=32), nullable=True))
        # None until the plan has chosen a channel.
        batch_op.alter_column('channel', existing_type=sa.String(length=16), nullable=True)
        batch_op.drop_constraint('ck_message_status', type_='check')
        batch_op.create_check_constraint('ck_message_status', STATUSES)

    op.create_table('message_attempts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('error_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.CheckConstraint("outcome IN ('started', 'sent', 'refused', 'retry', 'held')", name='ck_attempt_outcome'),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('message_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_attempts_message_id'), ['message_id'], unique=False)

    with op.batch_alter_table('campaign_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('over_monthly_cap', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('no_recent_contact', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('campaign_runs', schema=None) as batch_op:
        batch_op.drop_column('no_recent_contact')
        batch_op.drop_column('over_monthly_cap')

    with op.batch_alter_table('message_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_attempts_message_id'))
    op.drop_table('message_attempts')

    # Messages skipped by a plan were never sent; before this revision they count as failed.
    op.execute("UPDATE messages SET status = 'failed' WHERE status = 'skipped'")
    op.execute("UPDATE messages SET channel = 'cs' WHERE channel IS NULL")
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_constraint('ck_message_status', type_='check')
        batch_op.create_check_constraint('ck_message_status', STATUSES_BEFORE)
        batch_op.alter_column('channel', existing_type=sa.String(length=16), nullable=False)
        batch_op.drop_column('skip_reason')
        batch_op.drop_column('fields')
