"""indexes on credentials by SDDC Manager's id (expiry checks, actions) and by presence
(a source's counts)

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
        batch_op.create_index(
            'ix_credentials_env_source_present', ['environment_id', 'source', 'present']
        )


def downgrade() -> None:
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.drop_index('ix_credentials_env_source_present')
        batch_op.drop_index('ix_credentials_env_source_remote')
