"""zalo_tokens: the pair encrypted at rest; a pair stored before is marked as still in clear

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A migration has no key to encrypt with: a pair stored before stays in clear, marked
    # so, until the application reads it and saves it again encrypted (DbTokenStore.load).
    with op.batch_alter_table('zalo_tokens') as batch_op:
        batch_op.add_column(sa.Column('encrypted', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    # An encrypted pair cannot go back to clear text here: downgrading leaves ciphertext
    # that the previous version takes for tokens. Delete the row and authorise the OA again,
    # or decrypt it with the keys first.
    with op.batch_alter_table('zalo_tokens') as batch_op:
        batch_op.drop_column('encrypted')
