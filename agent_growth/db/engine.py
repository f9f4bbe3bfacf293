"""One async engine per process, and the helpers that open sessions and raw connections.

Everything asynchronous (API, workers, operator) goes through `session_factory()`. Bulk loading
uses a plain psycopg connection from `psycopg_dsn()`, because COPY is a psycopg feature that the
ORM does not expose.
"""

from __future__ import annotations

import functools

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from agent_growth.settings import get_settings

# Advisory lock key for creating databases; any fixed number shared by every process will do.
# The lock is held by the connection and goes with it.
CREATE_DATABASE_LOCK_ID = 0x61676462

# Creating a database takes a second or two; a lock held far longer than this is a hung holder.
LOCK_WAIT_S = 60


@functools.cache
def engine() -> AsyncEngine:
    # pool_pre_ping: a PostgreSQL restart must not fail the first request after it.
    settings = get_settings()
    return create_async_engine(
        settings.database_url, pool_pre_ping=True, pool_size=settings.database_pool_size
    )


@functools.cache
def session_factory() -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine(), expire_on_commit=False)


async def dispose() -> None:
    if engine.cache_info().currsize:
        await engine().dispose()
    engine.cache_clear()
    session_factory.cache_clear()


def psycopg_dsn(database_url: str | None = None) -> str:
    """The settings' SQLAlchemy URL as a libpq connection string."""
    url = make_url(database_url or get_settings().database_url)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def ensure_database(database_url: str | None = None) -> bool:
    """Create the database named in the URL when it does not exist; True when it was created.

    Pods that start together all call this. Two CREATE DATABASE statements racing for one name
    fail the loser with a unique violation on the catalogue rather than DuplicateDatabase, so
    the check and the creation run under an advisory lock on the maintenance database; a
    creator that holds no lock (an older release, a person) is still recognised by either error.
    """
    url = make_url(database_url or get_settings().database_url)
    maintenance = psycopg_dsn(url.set(database="postgres").render_as_string(hide_password=False))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        # A lock held by a hung process must not hang every pod that starts after it.
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{LOCK_WAIT_S}s")))
        conn.execute("SELECT pg_advisory_lock(%s)", (CREATE_DATABASE_LOCK_ID,))
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)
        ).fetchone()
        if exists:
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(url.database or "")))
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            return False
        return True
