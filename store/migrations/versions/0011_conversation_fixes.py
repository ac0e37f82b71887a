"""Conversation fixes: phone verification codes and related fields (issue 13)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('phone_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('tries', sa.Integer(), nullable=False),
    sa.Column('created_at', store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('used_at', store.models.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_phone_codes_openid_created', 'phone_codes', ['openid', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_phone_codes_openid_created', table_name='phone_codes')
    op.drop_table('phone_codes')
