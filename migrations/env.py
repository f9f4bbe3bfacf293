"""Alembic environment: runs migrations with the synchronous psycopg driver.

Migrations take a transaction-level advisory lock first, so that several pods starting at once
(or a Helm hook racing a manual run) apply them one after another instead of concurrently.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from agent_growth.db.models import Base
from agent_growth.settings import get_settings

# Any fixed number works; it only has to be the same for every process that migrates.
MIGRATION_LOCK_ID = 0x61677277

config = context.config
target_metadata = Base.metadata


def database_url() -> str:
    return config.attributes.get("database_url") or get_settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
