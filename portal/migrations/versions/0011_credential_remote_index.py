"""an index on credentials by SDDC Manager's id, for expiry checks and actions

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 23:40:00
"""

from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.create_index(
            'ix_credentials_env_source_remote', ['environment_id', 'source', 'remote_id']
        )


def downgrade() -> None:
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.drop_index('ix_credentials_env_source_remote')
