"""who saw which password: the credentials each reveal, copy and export showed, and an index
of one person's audit records by time

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 13:40:00
"""

import sqlalchemy as sa
from alembic import op


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_events_actor_at', ['actor', 'at'])
    op.create_table(
        'credential_sightings',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('event_id', sa.Integer(), nullable=False),
        sa.Column('credential_id', sa.Integer(), nullable=True),
        sa.Column('credential_ids', sa.Text(), nullable=True),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['event_id'], ['audit_events.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('credential_sightings', schema=None) as batch_op:
        batch_op.create_index('ix_credential_sightings_event', ['event_id'], unique=True)
        batch_op.create_index('ix_credential_sightings_credential', ['credential_id'])
    # Records up to here name credentials only in their text (reveals, copies) or not at all
    # (exports): the report reads them by name and estimates exports (portal.audit.seen).
    conn = op.get_bind()
    newest = conn.execute(sa.text('SELECT MAX(id) FROM audit_events')).scalar() or 0
    meta = sa.table('portal_meta', sa.column('key', sa.String), sa.column('value', sa.Text))
    op.bulk_insert(meta, [{'key': 'seen.legacy_until', 'value': str(newest)}])


def downgrade() -> None:
    op.execute("DELETE FROM portal_meta WHERE key = 'seen.legacy_until'")
    with op.batch_alter_table('credential_sightings', schema=None) as batch_op:
        batch_op.drop_index('ix_credential_sightings_credential')
        batch_op.drop_index('ix_credential_sightings_event')
    op.drop_table('credential_sightings')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_actor_at')
