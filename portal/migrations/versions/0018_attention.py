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
    # Plain ALTER TABLE (SQLite 3.35+ drops columns too): a batch copy of credentials would
    # reflect environments, whose expression index SQLite cannot reflect.
    op.add_column('credentials', sa.Column('connectivity_status', sa.String(length=32), nullable=True))
    op.add_column('credentials', sa.Column('connectivity_error', sa.Text(), nullable=True))
    op.add_column('credentials', sa.Column('connectivity_remediation', sa.Text(), nullable=True))
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
    op.create_index(
        'ix_attention_findings_environment_id', 'attention_findings', ['environment_id']
    )


def downgrade() -> None:
    op.drop_index('ix_attention_findings_environment_id', table_name='attention_findings')
    op.drop_table('attention_findings')
    op.drop_column('credentials', 'connectivity_remediation')
    op.drop_column('credentials', 'connectivity_error')
    op.drop_column('credentials', 'connectivity_status')
