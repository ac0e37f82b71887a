"""Orders bound to the collection they were opened for; the global roster look-up limit (issue 8)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('orders') as batch:
        batch.add_column(sa.Column('closed_reason', sa.String(length=16), nullable=True))
    op.create_index('ix_match_attempts_created', 'match_attempts', ['created_at'], unique=False)
    op.create_table(
        'alert_marks',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('quiet_until', store.models.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )


def downgrade() -> None:
    op.drop_table('alert_marks')
    op.drop_index('ix_match_attempts_created', table_name='match_attempts')
    with op.batch_alter_table('orders') as batch:
        batch.drop_column('closed_reason')
