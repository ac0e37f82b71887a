"""Every schema revision upgrades to head with data in it, on SQLite and (TEST_DATABASE_URL) PostgreSQL.

The chain is read from the migration scripts, so a revision added later is tested without touching this
file. At each revision one row goes into every table through plain SQL (Core inserts on the reflected
schema of that revision, values made from each column's type, foreign keys pointing at the rows before);
after the upgrade every row is still there with the values of every column that still exists.
Each step's downgrade is run too: back to the parent with the parent's rows in it, and up again.
"""
from __future__ import annotations

import datetime as dt
import decimal
import json

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, create_engine, inspect, select, text, types

from store import migrate

# Columns a later migration rewrites on purpose, as {(table, column): why}; their values are not compared.
TRANSFORMED: dict[tuple[str, str], str] = {}

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def chain() -> list[tuple[str, str | None]]:
    """(revision, its parent) from the first to head."""
    scripts = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    return [(script.revision, script.down_revision) for script in reversed(list(scripts.walk_revisions()))]


REVISIONS = chain()


@pytest.fixture
def url(database_url):
    engine = create_engine(database_url)
    if engine.dialect.name == "postgresql":  # tables of every revision, triggers, functions: all of it
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return database_url


def value_for(column, marker: str, references: dict[str, object]):
    if column.name in references:
        return references[column.name]
    kind = column.type
    if isinstance(kind, types.Boolean):
        return False
    if isinstance(kind, types.Integer):
        return 7
    if isinstance(kind, (types.Float, types.Numeric)):
        return decimal.Decimal("1.5") if getattr(kind, "asdecimal", False) else 1.5
    if isinstance(kind, types.DateTime):
        return WHEN
    if isinstance(kind, types.Date):
        return WHEN.date()
    if isinstance(kind, types.JSON):
        return {"marker": marker}
    if isinstance(kind, types.LargeBinary):
        return marker.encode()
    if isinstance(kind, types.String):  # Text too
        return marker[: kind.length] if kind.length else marker
    raise AssertionError(f"no sample value for {column.table.name}.{column.name} ({kind!r})")


def fill(connection, revision: str) -> dict[str, dict[str, object]]:
    """One row in every table; {table: the row as inserted, with its primary key}."""
    schema = MetaData()
    schema.reflect(connection)
    rows: dict[str, dict[str, object]] = {}
    for table in schema.sorted_tables:
        if table.name == "alembic_version":
            continue
        references = {}
        for column in table.columns:
            for key in column.foreign_keys:
                target = rows.get(key.column.table.name)
                references[column.name] = target.get(key.column.name) if target else None
        row = {}
        for column in table.columns:
            if column.primary_key and column.autoincrement is not False and isinstance(column.type, types.Integer) \
                    and len(table.primary_key.columns) == 1 and column.name not in references:
                continue  # the database numbers it
            row[column.name] = value_for(column, f"{revision}:{table.name}:{column.name}", references)
        result = connection.execute(table.insert().values(**row))
        row.update(dict(zip((c.name for c in table.primary_key.columns), result.inserted_primary_key)))
        rows[table.name] = row
    return rows


def normalized(value):
    if isinstance(value, dt.datetime):
        return (value.astimezone(dt.timezone.utc) if value.tzinfo else value).replace(tzinfo=None)
    if isinstance(value, str) and value.startswith("{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def assert_rows_survived(connection, rows: dict[str, dict[str, object]]) -> None:
    schema = MetaData()
    schema.reflect(connection)
    for name, row in rows.items():
        assert name in schema.tables, f"table {name} and its rows are gone"
        table = schema.tables[name]
        key = [table.c[column.name] == row[column.name] for column in table.primary_key.columns]
        found = connection.execute(select(table).where(*key)).mappings().all()
        assert len(found) == 1, f"{name}: the row {row} is gone"
        for column, value in row.items():
            if column in table.c and (name, column) not in TRANSFORMED:
                assert normalized(found[0][column]) == normalized(value), f"{name}.{column} changed"


def schema_shape(connection) -> dict[str, object]:
    inspector = inspect(connection)
    return {table: sorted((column["name"], str(column["type"]), column["nullable"])
                          for column in inspector.get_columns(table))
            for table in sorted(inspector.get_table_names())}


@pytest.mark.parametrize("revision", [revision for revision, _ in REVISIONS])
def test_data_at_every_revision_survives_the_upgrade_to_head(url, revision):
    migrate.upgrade(url, revision)
    engine = create_engine(url)
    with engine.begin() as connection:
        rows = fill(connection, revision)
    assert rows, "the revision has tables"
    migrate.upgrade(url, "head")
    with engine.connect() as connection:
        assert_rows_survived(connection, rows)
    engine.dispose()


@pytest.mark.parametrize("revision,parent", [pair for pair in REVISIONS if pair[1] is not None])
def test_each_step_downgrades_with_data_and_upgrades_again(url, revision, parent):
    migrate.upgrade(url, parent)
    engine = create_engine(url)
    with engine.begin() as connection:
        rows = fill(connection, parent)
    migrate.upgrade(url, revision)
    with engine.connect() as connection:
        upgraded = schema_shape(connection)
    migrate.downgrade(url, parent)
    with engine.connect() as connection:
        assert_rows_survived(connection, rows)
    migrate.upgrade(url, revision)
    with engine.connect() as connection:
        assert schema_shape(connection) == upgraded
        assert_rows_survived(connection, rows)
    engine.dispose()


def test_the_chain_is_one_line_from_base_to_head():
    assert REVISIONS[0][1] is None
    assert [parent for _, parent in REVISIONS[1:]] == [revision for revision, _ in REVISIONS[:-1]]
