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
    pass


def downgrade() -> None:
    pass
