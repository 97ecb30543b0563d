"""credential actions (rotate, update, remediate, auto-rotate) and their items; expiry checks

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 19:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('endpoints', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expiry_requested_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('expiry_checked_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('expiry_error', sa.Text(), nullable=True))
    op.create_table(
        'credential_actions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('environment_id', sa.Integer(), nullable=False),
        sa.Column('operation', sa.String(length=16), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('requested_by', sa.String(length=128), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=True),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.Column('upstream_task_id', sa.String(length=128), nullable=True),
        sa.Column('password_enc', sa.LargeBinary(), nullable=True),
        sa.Column('auto_rotate_enabled', sa.Boolean(), nullable=True),
        sa.Column('auto_rotate_days', sa.Integer(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('heartbeat_at', sa.DateTime(), nullable=True),
        sa.Column('not_before', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('credential_actions', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_credential_actions_environment_id'), ['environment_id'], unique=False
        )
        batch_op.create_index(batch_op.f('ix_credential_actions_state'), ['state'], unique=False)
    op.create_table(
        'credential_action_items',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('action_id', sa.Integer(), nullable=False),
        sa.Column('credential_id', sa.Integer(), nullable=True),
        sa.Column('resource_name', sa.String(length=512), nullable=False),
        sa.Column('resource_type', sa.String(length=64), nullable=False),
        sa.Column('username', sa.String(length=512), nullable=False),
        sa.Column('credential_type', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['action_id'], ['credential_actions.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['credential_id'], ['credentials.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('credential_action_items', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_credential_action_items_action_id'), ['action_id'], unique=False
        )
        batch_op.create_index(
            batch_op.f('ix_credential_action_items_credential_id'), ['credential_id'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('credential_action_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_credential_action_items_credential_id'))
        batch_op.drop_index(batch_op.f('ix_credential_action_items_action_id'))
    op.drop_table('credential_action_items')
    with op.batch_alter_table('credential_actions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_credential_actions_state'))
        batch_op.drop_index(batch_op.f('ix_credential_actions_environment_id'))
    op.drop_table('credential_actions')
    with op.batch_alter_table('endpoints', schema=None) as batch_op:
        batch_op.drop_column('expiry_error')
        batch_op.drop_column('expiry_checked_at')
        batch_op.drop_column('expiry_requested_at')
