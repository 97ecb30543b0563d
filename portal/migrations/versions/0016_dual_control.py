"""dual control: access policies, access requests and their windows, check-outs, and the
rotation a credential is owed

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 15:25:00
"""

import warnings

import sqlalchemy as sa
from alembic import op


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'access_policies',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('environment_id', sa.Integer(), nullable=True),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('resource_type', sa.String(length=64), nullable=True),
        sa.Column('credential_type', sa.String(length=64), nullable=True),
        sa.Column('account_type', sa.String(length=64), nullable=True),
        sa.Column('username', sa.String(length=512), nullable=True),
        sa.Column('requires', sa.String(length=32), nullable=False),
        sa.Column('break_glass', sa.Boolean(), nullable=False),
        sa.Column('updated_by', sa.String(length=128), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('access_policies', schema=None) as batch_op:
        batch_op.create_index(
            'ix_access_policies_env_position', ['environment_id', 'position']
        )
    op.create_table(
        'access_requests',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('credential_id', sa.Integer(), nullable=False),
        sa.Column('environment_id', sa.Integer(), nullable=False),
        sa.Column('requester_id', sa.Integer(), nullable=True),
        sa.Column('requester_name', sa.String(length=128), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('ticket', sa.String(length=128), nullable=True),
        sa.Column('minutes', sa.Integer(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('decided_at', sa.DateTime(), nullable=True),
        sa.Column('decider_id', sa.Integer(), nullable=True),
        sa.Column('decider_name', sa.String(length=128), nullable=True),
        sa.Column('decision_reason', sa.Text(), nullable=True),
        sa.Column('opens_at', sa.DateTime(), nullable=True),
        sa.Column('closes_at', sa.DateTime(), nullable=True),
        sa.Column('changed_at_approval', sa.DateTime(), nullable=True),
        sa.Column('closed_reason', sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(['credential_id'], ['credentials.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['requester_id'], ['users.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['decider_id'], ['users.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('access_requests', schema=None) as batch_op:
        batch_op.create_index('ix_access_requests_credential_id', ['credential_id'])
        batch_op.create_index('ix_access_requests_environment_id', ['environment_id'])
        batch_op.create_index('ix_access_requests_state', ['state'])
    op.create_table(
        'credential_checkouts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('credential_id', sa.Integer(), nullable=False),
        sa.Column('environment_id', sa.Integer(), nullable=False),
        sa.Column('holder_id', sa.Integer(), nullable=True),
        sa.Column('holder_name', sa.String(length=128), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('due_at', sa.DateTime(), nullable=False),
        sa.Column('ended_at', sa.DateTime(), nullable=True),
        sa.Column('ended_by_name', sa.String(length=128), nullable=True),
        sa.Column('end_reason', sa.String(length=32), nullable=True),
        sa.Column('action_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['credential_id'], ['credentials.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['holder_id'], ['users.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(
            ['action_id'], ['credential_actions.id'], ondelete='SET NULL'
        ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('credential_checkouts', schema=None) as batch_op:
        batch_op.create_index('ix_credential_checkouts_credential_id', ['credential_id'])
        batch_op.create_index(
            'uq_credential_checkouts_one_active',
            ['credential_id'],
            unique=True,
            sqlite_where=sa.text('ended_at IS NULL'),
            postgresql_where=sa.text('ended_at IS NULL'),
        )
    op.add_column('credentials', sa.Column('rotation_due_since', sa.DateTime(), nullable=True))
    op.add_column(
        'credentials', sa.Column('rotation_due_reason', sa.String(length=32), nullable=True)
    )
    op.add_column('credentials', sa.Column('rotation_error', sa.Text(), nullable=True))
    op.add_column(
        'credentials',
        sa.Column('rotation_attempts', sa.Integer(), nullable=False, server_default='0'),
    )


def downgrade() -> None:
    # SQLite copies the table to drop its columns, and reads the environments table it refers
    # to, whose index on lower(name) it cannot read back (and does not need).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression")
        with op.batch_alter_table('credentials', schema=None) as batch_op:
            batch_op.drop_column('rotation_attempts')
            batch_op.drop_column('rotation_error')
            batch_op.drop_column('rotation_due_reason')
            batch_op.drop_column('rotation_due_since')
    with op.batch_alter_table('credential_checkouts', schema=None) as batch_op:
        batch_op.drop_index('uq_credential_checkouts_one_active')
        batch_op.drop_index('ix_credential_checkouts_credential_id')
    op.drop_table('credential_checkouts')
    with op.batch_alter_table('access_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_access_requests_state')
        batch_op.drop_index('ix_access_requests_environment_id')
        batch_op.drop_index('ix_access_requests_credential_id')
    op.drop_table('access_requests')
    with op.batch_alter_table('access_policies', schema=None) as batch_op:
        batch_op.drop_index('ix_access_policies_env_position')
    op.drop_table('access_policies')
