"""Fixtures shared by every test: a real PostgreSQL database and a real Redis, both on loopback.

The session creates its own database (`agent_growth_test`), migrates it once, and empties the
tables before each test. Redis tests use database 15, emptied before each test, so a demo running
on database 0 is left alone.
"""

from __future__ import annotations

import os

TEST_DATABASE_URL = os.environ.setdefault(
    "AGENT_GROWTH_TEST_DATABASE_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/agent_growth_test",
)
os.environ["AGENT_GROWTH_DATABASE_URL"] = TEST_DATABASE_URL
os.environ.setdefault("AGENT_GROWTH_REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ["AGENT_GROWTH_API_KEYS"] = "test-key"
os.environ["AGENT_GROWTH_WEBHOOK_ALLOW_PRIVATE"] = "true"

from collections.abc import AsyncIterator, Iterator  # noqa: E402

import psycopg  # noqa: E402
import pytest  # noqa: E402
import redis  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession  # noqa: E402

from agent_growth.db import engine as db_engine  # noqa: E402
from agent_growth.db import migrate  # noqa: E402
from agent_growth.db.models import Base  # noqa: E402
from agent_growth.settings import get_settings  # noqa: E402
from agent_growth.tasks import status  # noqa: E402

API_KEY = "test-key"


@pytest.fixture(scope="session")
def database_url() -> str:
    """A freshly created and migrated test database."""
    dsn = db_engine.psycopg_dsn(TEST_DATABASE_URL)
    name = dsn.rsplit("/", 1)[1]
    maintenance = dsn.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate.upgrade(TEST_DATABASE_URL)
    return TEST_DATABASE_URL


@pytest.fixture
def scratch_database(database_url: str) -> Iterator[str]:
    """The URL of a new, empty and unmigrated database, dropped after the test."""
    url = make_url(database_url)
    name = f"{url.database}_scratch"
    maintenance = db_engine.psycopg_dsn(url.set(database="postgres").render_as_string(False))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _clean_state(database_url: str) -> Iterator[None]:
    """Every test starts with empty tables and an empty Redis database."""
    get_settings.cache_clear()
    status.forget_recent_duration()
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with psycopg.connect(db_engine.psycopg_dsn(database_url), autocommit=True) as conn:
        conn.execute(f"TRUNCATE {tables} CASCADE")
    redis.Redis.from_url(get_settings().redis_url).flushdb()
    yield
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
async def _dispose_engine() -> AsyncIterator[None]:
    """Async connections belong to one event loop, and each test has its own loop."""
    yield
    await db_engine.dispose()


@pytest.fixture
async def session() -> AsyncIterator[AsyncSession]:
    async with db_engine.session_factory()() as session:
        yield session


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(get_settings().redis_url)
    yield client
    await client.aclose()
