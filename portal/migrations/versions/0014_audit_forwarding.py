"""destinations that the audit records are forwarded to, each with its cursor in the chain

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 14:10:00
"""

import sqlalchemy as sa
from alembic import op


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'audit_destinations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('address', sa.String(length=512), nullable=False),
        sa.Column('ca_pem', sa.Text(), nullable=True),
        sa.Column('token_enc', sa.LargeBinary(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('created_by', sa.String(length=128), nullable=False),
        sa.Column('sent_seq', sa.BigInteger(), nullable=False),
        sa.Column('sent_checkpoint_id', sa.Integer(), nullable=False),
        sa.Column('last_success_at', sa.DateTime(), nullable=True),
        sa.Column('last_error', sa.String(length=500), nullable=True),
        sa.Column('last_error_at', sa.DateTime(), nullable=True),
        sa.Column('behind_alerted', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade() -> None:
    op.drop_table('audit_destinations')
