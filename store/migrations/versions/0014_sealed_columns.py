"""Personal data (issue 14): ID and phone numbers encrypted at rest, looked up by keyed hash

The schema only: *_hash columns beside the looked-up numbers (the roster's one unique, so one ID is one
graduate), the numbers' columns widened to hold tokens, the old unique constraint on the plaintext
dropped. The values themselves are sealed in batches by store/sealing.py, which `flask db upgrade` runs
right after this (resumable: an interrupted run goes on where it stopped).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa
import store.models


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

HASHED = {"roster_entries": ("id_number", "phone"), "candidates": ("id_number", "phone")}
WIDENED = {"roster_entries": ("id_number", "phone"), "candidates": ("id_number", "phone"),
           "notifications": ("phone", "payload"), "reminder_recipients": ("phone",), "phone_codes": ("phone",),
           "reminder_campaigns": ("id_numbers",)}
# SQLite's unnamed unique constraint gets this name when batch mode reflects the table.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    unique = [constraint["name"] for constraint in sa.inspect(op.get_bind()).get_unique_constraints("roster_entries")
              if constraint["column_names"] == ["id_number"]]
    with op.batch_alter_table("roster_entries", naming_convention=NAMING) as batch:
        batch.drop_constraint(unique[0] or "uq_roster_entries_id_number", type_="unique")
    for table, columns in WIDENED.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                # A JSON list becomes JSON text of sealed tokens; on PostgreSQL the json value casts to text.
                batch.alter_column(column, type_=sa.Text(), postgresql_using=f"{column}::text")
    for table, columns in HASHED.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.add_column(sa.Column(f"{column}_hash", sa.String(length=64), nullable=True))
        for column in columns:
            unique = table == "roster_entries" and column == "id_number"
            op.create_index(f"ix_{table}_{column}_hash", table, [f"{column}_hash"], unique=unique)
    with op.batch_alter_table("roster_entries") as batch:
        batch.add_column(sa.Column("id_number_masked_hash", sa.String(length=64), nullable=True))
    op.create_index("ix_roster_entries_id_number_masked_hash", "roster_entries", ["id_number_masked_hash"])
    op.create_table('seal_progress',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('last_key', sa.Text(), nullable=True),
    sa.Column('finished', sa.Boolean(), nullable=False),
    sa.Column('updated_at', store.models.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    # Values already sealed stay tokens: unseal them first (a database never upgraded has none).
    op.drop_table('seal_progress')
    op.drop_index("ix_roster_entries_id_number_masked_hash", table_name="roster_entries")
    with op.batch_alter_table("roster_entries") as batch:
        batch.drop_column("id_number_masked_hash")
    for table, columns in HASHED.items():
        for column in columns:
            op.drop_index(f"ix_{table}_{column}_hash", table_name=table)
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.drop_column(f"{column}_hash")
    for table, columns in WIDENED.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                if column in ("id_numbers", "payload"):
                    batch.alter_column(column, type_=sa.JSON(), postgresql_using=f"{column}::json")
                else:
                    batch.alter_column(column, type_=sa.String(length=18 if column == "id_number" else 20))
    with op.batch_alter_table("roster_entries") as batch:
        batch.create_unique_constraint("roster_entries_id_number_key", ["id_number"])
