"""endpoints keep the counts of their present and absent credentials

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:30:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('endpoints', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('credential_count', sa.Integer(), server_default='0', nullable=False)
        )
        batch_op.add_column(
            sa.Column('absent_count', sa.Integer(), server_default='0', nullable=False)
        )
    endpoints = sa.table(
        'endpoints',
        sa.column('environment_id', sa.Integer()),
        sa.column('source', sa.String()),
        sa.column('credential_count', sa.Integer()),
        sa.column('absent_count', sa.Integer()),
    )
    credentials = sa.table(
        'credentials',
        sa.column('environment_id', sa.Integer()),
        sa.column('source', sa.String()),
        sa.column('present', sa.Boolean()),
    )

    def count(present: bool):
        return (
            sa.select(sa.func.count())
            .where(
                credentials.c.environment_id == endpoints.c.environment_id,
                credentials.c.source == endpoints.c.source,
                credentials.c.present.is_(sa.true() if present else sa.false()),
            )
            .scalar_subquery()
        )

    op.execute(endpoints.update().values(credential_count=count(True), absent_count=count(False)))


def downgrade() -> None:
    with op.batch_alter_table('endpoints', schema=None) as batch_op:
        batch_op.drop_column('absent_count')
        batch_op.drop_column('credential_count')
