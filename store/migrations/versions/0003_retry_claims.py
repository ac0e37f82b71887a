"""Retry claims that expire with their owner, and replies owed after a slow step (issue 8)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inbound_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=96), nullable=True))
        batch_op.add_column(sa.Column('lease_until', store.models.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('waiting_until', store.models.UtcDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('inbound_keys', schema=None) as batch_op:
        batch_op.drop_column('waiting_until')
        batch_op.drop_column('lease_until')
        batch_op.drop_column('owner')
