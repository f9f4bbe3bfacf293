"""The Alembic history builds exactly the schema the models describe, and unwinds completely."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from agent_growth.db import migrate
from agent_growth.db.models import Base


def test_upgrade_to_head_matches_the_models(scratch_database: str) -> None:
    migrate.upgrade(scratch_database)

    engine = create_engine(scratch_database)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_downgrade_to_base_removes_every_table(scratch_database: str) -> None:
    migrate.upgrade(scratch_database)
    migrate.downgrade(scratch_database, "base")

    engine = create_engine(scratch_database)
    remaining = set(inspect(engine).get_table_names()) - {"alembic_version"}
    engine.dispose()
    assert remaining == set()


def test_upgrading_twice_is_harmless(scratch_database: str) -> None:
    migrate.upgrade(scratch_database)
    migrate.upgrade(scratch_database)

    engine = create_engine(scratch_database)
    assert "background_tasks" in inspect(engine).get_table_names()
    engine.dispose()
