"""Fixtures shared by every test: a real PostgreSQL database and a real Redis, both on loopback.

The session creates its own database, migrates it once, and empties the tables before each
test. Redis tests use database 15 and a key prefix of their own, whose keys are deleted before
each test. Both are named after the checkout (`agent_growth_test_<hash of its path>`), so two
checkouts, or the demo, can run beside each other; the AGENT_GROWTH_TEST_DATABASE_URL,
AGENT_GROWTH_REDIS_URL and AGENT_GROWTH_REDIS_PREFIX variables override them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHECKOUT = hashlib.sha1(str(Path(__file__).resolve().parents[1]).encode()).hexdigest()[:8]
TEST_DATABASE_URL = os.environ.setdefault(
    "AGENT_GROWTH_TEST_DATABASE_URL",
    f"postgresql+psycopg://postgres@127.0.0.1:5432/agent_growth_test_{CHECKOUT}",
)
os.environ["AGENT_GROWTH_DATABASE_URL"] = TEST_DATABASE_URL
os.environ.setdefault("AGENT_GROWTH_REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("AGENT_GROWTH_REDIS_PREFIX", f"agtest-{CHECKOUT}")
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
    settings = get_settings()
    with redis.Redis.from_url(settings.redis_url) as client:
        stale = list(client.scan_iter(match=f"{settings.redis_prefix}:*", count=1000))
        if stale:
            client.delete(*stale)
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
