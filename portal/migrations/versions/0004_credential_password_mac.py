"""credentials keep a keyed hash of the password beside its ciphertext

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:40:00

Rows synced before this revision keep NULL until their next sync fills it.
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('password_mac', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.drop_column('password_mac')
