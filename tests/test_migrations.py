"""The Alembic history builds exactly the schema the models describe, and unwinds completely."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from agent_growth.db import engine as db_engine
from agent_growth.db import migrate
from agent_growth.db.models import Base


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    url = make_url(database_url)
    name = f"{url.database}_migrations"
    maintenance = db_engine.psycopg_dsn(url.set(database="postgres").render_as_string(False))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_to_head_matches_the_models(empty_database: str) -> None:
    migrate.upgrade(empty_database)

    engine = create_engine(empty_database)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_downgrade_to_base_removes_every_table(empty_database: str) -> None:
    migrate.upgrade(empty_database)
    migrate.downgrade(empty_database, "base")

    engine = create_engine(empty_database)
    remaining = set(inspect(engine).get_table_names()) - {"alembic_version"}
    engine.dispose()
    assert remaining == set()


def test_upgrading_twice_is_harmless(empty_database: str) -> None:
    migrate.upgrade(empty_database)
    migrate.upgrade(empty_database)

    engine = create_engine(empty_database)
    assert "background_tasks" in inspect(engine).get_table_names()
    engine.dispose()
