"""Local groups mapped to global roles, and grants on environments to users and groups

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 20:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'groups',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )
    op.create_table(
        'group_members',
        sa.Column('group_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['group_id'], ['groups.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('group_id', 'user_id'),
    )
    with op.batch_alter_table('group_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_group_members_user_id'), ['user_id'], unique=False)
    op.create_table(
        'environment_grants',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('environment_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('group_id', sa.Integer(), nullable=True),
        sa.Column('level', sa.String(length=8), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            '(user_id IS NULL) <> (group_id IS NULL)', name='ck_environment_grants_subject'
        ),
        sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['group_id'], ['groups.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('environment_id', 'group_id'),
        sa.UniqueConstraint('environment_id', 'user_id'),
    )
    with op.batch_alter_table('environment_grants', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_environment_grants_group_id'), ['group_id'], unique=False
        )
        batch_op.create_index(
            batch_op.f('ix_environment_grants_user_id'), ['user_id'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('environment_grants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_environment_grants_user_id'))
        batch_op.drop_index(batch_op.f('ix_environment_grants_group_id'))
    op.drop_table('environment_grants')
    with op.batch_alter_table('group_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_group_members_user_id'))
    op.drop_table('group_members')
    op.drop_table('groups')
