"""needs attention: SDDC Manager's connectivity per credential (status, message, what to do)
and the findings already announced

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 15:40:00
"""

import sqlalchemy as sa
from alembic import op


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('connectivity_status', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('connectivity_error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('connectivity_remediation', sa.Text(), nullable=True))
    op.create_table(
        'attention_findings',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('credential_id', sa.Integer(), nullable=False),
        sa.Column('environment_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('first_seen_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['credential_id'], ['credentials.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('credential_id', 'kind', name='uq_attention_finding'),
    )
    with op.batch_alter_table('attention_findings', schema=None) as batch_op:
        batch_op.create_index(
            'ix_attention_findings_environment_id', ['environment_id'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('attention_findings', schema=None) as batch_op:
        batch_op.drop_index('ix_attention_findings_environment_id')
    op.drop_table('attention_findings')
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.drop_column('connectivity_remediation')
        batch_op.drop_column('connectivity_error')
        batch_op.drop_column('connectivity_status')
