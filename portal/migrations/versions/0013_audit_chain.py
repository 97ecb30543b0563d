"""tamper evidence of the audit log: each record's seal, its place and link in the chain, and
signed checkpoints of the chain's head

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 13:10:00
"""

import sqlalchemy as sa
from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('nonce', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('mac', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('seq', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('chain', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_audit_events_seq', ['seq'], unique=True)
        batch_op.create_index('ix_audit_events_nonce', ['nonce'], unique=True)
    op.create_table(
        'audit_checkpoints',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('record_id', sa.Integer(), nullable=True),
        sa.Column('chain', sa.String(length=64), nullable=False),
        sa.Column('key_id', sa.String(length=64), nullable=False),
        sa.Column('signature', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    # The records already here predate the chain: the first seal adopts them as they are.
    conn = op.get_bind()
    newest = conn.execute(sa.text('SELECT MAX(id) FROM audit_events')).scalar() or 0
    meta = sa.table('portal_meta', sa.column('key', sa.String), sa.column('value', sa.Text))
    op.bulk_insert(
        meta,
        [
            {'key': 'audit.head', 'value': '0:'},
            {'key': 'audit.legacy_until', 'value': str(newest)},
        ],
    )


def downgrade() -> None:
    op.execute(
        "DELETE FROM portal_meta WHERE key IN "
        "('audit.head', 'audit.legacy_until', 'audit.anchor', 'audit_key_id')"
    )
    op.drop_table('audit_checkpoints')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_nonce')
        batch_op.drop_index('ix_audit_events_seq')
        batch_op.drop_column('chain')
        batch_op.drop_column('seq')
        batch_op.drop_column('mac')
        batch_op.drop_column('nonce')
