"""environment names unique without regard to case

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 02:45:00
"""

import sqlalchemy as sa
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Names that differ only in case were allowed before: the later one gets its id added,
    # so the index can be made and no environment is lost.
    conn = op.get_bind()
    seen = set()
    rows = conn.execute(sa.text('SELECT id, name FROM environments ORDER BY id')).fetchall()
    for env_id, name in rows:
        key = name.lower()
        if key in seen:
            renamed = f'{name} ({env_id})'
            conn.execute(
                sa.text('UPDATE environments SET name = :name WHERE id = :id'),
                {'name': renamed, 'id': env_id},
            )
            key = renamed.lower()
        seen.add(key)
    op.create_index(
        'ix_environments_name_any_case',
        'environments',
        [sa.text('lower(name)')],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index('ix_environments_name_any_case', table_name='environments')
