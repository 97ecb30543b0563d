"""sign-in providers (LDAP, OpenID Connect), the source of users and groups

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 22:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'sign_in_providers',
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('options', sa.Text(), nullable=False),
        sa.Column('secret_enc', sa.LargeBinary(), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.Column('updated_by', sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint('kind'),
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('source', sa.String(length=8), server_default='local', nullable=False)
        )
        batch_op.add_column(sa.Column('external_id', sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column('directory_checked_at', sa.DateTime(), nullable=True))
        batch_op.create_index(
            'ix_users_source_external_id', ['source', 'external_id'], unique=True
        )
    with op.batch_alter_table('groups', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('source', sa.String(length=16), server_default='local', nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table('groups', schema=None) as batch_op:
        batch_op.drop_column('source')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index('ix_users_source_external_id')
        batch_op.drop_column('directory_checked_at')
        batch_op.drop_column('external_id')
        batch_op.drop_column('source')
    op.drop_table('sign_in_providers')
