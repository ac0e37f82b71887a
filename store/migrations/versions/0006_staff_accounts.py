"""Staff accounts, roles, sign-in throttling and audit fields for the console (issue 9)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('staff_users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('failed_logins', sa.Integer(), nullable=False),
    sa.Column('locked_until', store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_login_at', store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_at', store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    with op.batch_alter_table('audit_events') as batch:
        batch.add_column(sa.Column('reason', sa.Text(), nullable=True))
        batch.add_column(sa.Column('ip', sa.String(length=45), nullable=True))
        batch.create_index('ix_audit_events_created_at', ['created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_events') as batch:
        batch.drop_index('ix_audit_events_created_at')
        batch.drop_column('ip')
        batch.drop_column('reason')
    op.drop_table('staff_users')
