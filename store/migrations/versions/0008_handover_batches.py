"""Hand-over batches of approved photos (issue 9)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('handover_batches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('photo_count', sa.Integer(), nullable=False),
    sa.Column('file_key', sa.String(length=16), nullable=False),
    sa.Column('normalised_copy', sa.Boolean(), nullable=False),
    sa.Column('path', sa.String(length=255), nullable=True),
    sa.Column('size_bytes', sa.BigInteger(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('builder', sa.String(length=32), nullable=True),
    sa.Column('lease_until', store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_at', store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', store.models.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('photos', schema=None) as batch_op:
        batch_op.add_column(sa.Column('handover_batch_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_photos_handover_batch_id'), ['handover_batch_id'], unique=False)
        batch_op.create_foreign_key('fk_photos_handover_batch_id', 'handover_batches', ['handover_batch_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('photos', schema=None) as batch_op:
        batch_op.drop_constraint('fk_photos_handover_batch_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_photos_handover_batch_id'))
        batch_op.drop_column('handover_batch_id')
    op.drop_table('handover_batches')
