"""Reminder campaigns and their recipients (issue 11)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('roster_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone', sa.String(length=20), nullable=True))
    op.create_table('reminder_campaigns',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('segment', sa.String(length=32), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=True),
    sa.Column('stuck_hours', sa.Integer(), nullable=True),
    sa.Column('id_numbers', sa.JSON(), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('send_at', store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('planned_at', store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('planned_count', sa.Integer(), nullable=False),
    sa.Column('finished_at', store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('driver', sa.String(length=32), nullable=True),
    sa.Column('lease_until', store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', store.models.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('reminder_recipients',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('graduate_key', sa.String(length=80), nullable=False),
    sa.Column('roster_entry_id', sa.Integer(), nullable=True),
    sa.Column('openid', sa.String(length=64), nullable=True),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('name', sa.String(length=64), nullable=True),
    sa.Column('planned_channel', sa.String(length=12), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=True),
    sa.Column('notification_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['reminder_campaigns.id'], ),
    sa.ForeignKeyConstraint(['notification_id'], ['notifications.id'], ),
    sa.ForeignKeyConstraint(['roster_entry_id'], ['roster_entries.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('campaign_id', 'graduate_key', name='uq_reminder_recipients_graduate')
    )
    op.create_index('ix_reminder_recipients_campaign_status', 'reminder_recipients',
                    ['campaign_id', 'status', 'id'], unique=False)
    op.create_table('throttle_buckets',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('tokens', sa.Float(), nullable=False),
    sa.Column('updated_at', store.models.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('throttle_buckets')
    op.drop_index('ix_reminder_recipients_campaign_status', table_name='reminder_recipients')
    op.drop_table('reminder_recipients')
    op.drop_table('reminder_campaigns')
    with op.batch_alter_table('roster_entries', schema=None) as batch_op:
        batch_op.drop_column('phone')
