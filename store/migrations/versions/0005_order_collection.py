"""Orders bound to the collection they were opened for (issue 8)

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
    pass


def downgrade() -> None:
    pass
