"""The support desk: takeovers, agent replies, canned replies (issue 10)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('canned_replies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=32), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('updated_by', sa.String(length=64), nullable=True),
    sa.Column('updated_at', store.models.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('candidates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('agent', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('agent_since', store.models.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('agent_active_at', store.models.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('handed_back_untold_at', store.models.UtcDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('candidates', schema=None) as batch_op:
        batch_op.drop_column('handed_back_untold_at')
        batch_op.drop_column('agent_active_at')
        batch_op.drop_column('agent_since')
        batch_op.drop_column('agent')
    op.drop_table('canned_replies')
