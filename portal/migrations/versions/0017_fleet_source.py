"""VCF Operations fleet management as a third source: the fleet appliance's root password for
the 9.0 locker's decryption (encrypted) and which API answered the last sync

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 15:30:00
"""

import sqlalchemy as sa
from alembic import op


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE (SQLite 3.35+ drops columns too): a batch copy of endpoints would
    # reflect environments, whose expression index SQLite cannot reflect.
    op.add_column('endpoints', sa.Column('locker_password_enc', sa.LargeBinary(), nullable=True))
    op.add_column('endpoints', sa.Column('api_detected', sa.String(length=64), nullable=True))


def downgrade() -> None:
    # Fleet endpoints and their credentials stay (nothing stored is lost); a portal of the
    # earlier revision fails their syncs with a message instead of reading them.
    op.drop_column('endpoints', 'api_detected')
    op.drop_column('endpoints', 'locker_password_enc')
