"""Review claims, reject reasons, overrides and second reviews (issue 9)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
