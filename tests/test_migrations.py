"""The Alembic history builds exactly the schema the models describe, and unwinds completely."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from agent_growth.db import engine as db_engine
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


def test_pods_migrating_at_once_create_and_migrate_the_database_once(
    scratch_database: str,
) -> None:
    # Several pods start together on a database that does not exist yet: each runs `migrate`.
    url = make_url(scratch_database)
    maintenance = db_engine.psycopg_dsn(url.set(database="postgres").render_as_string(False))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{url.database}"')
    environment = {**os.environ, "AGENT_GROWTH_DATABASE_URL": scratch_database}

    pods = [
        subprocess.Popen(
            [sys.executable, "-m", "agent_growth", "migrate"],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = [(*pod.communicate(timeout=120), pod.returncode) for pod in pods]

    assert [code for _, _, code in outcomes] == [0] * 4, [err for _, err, _ in outcomes]
    assert sum("created the database" in out for out, _, _ in outcomes) == 1
    engine = create_engine(scratch_database)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []
