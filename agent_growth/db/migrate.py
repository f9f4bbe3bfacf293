"""Runs the Alembic migrations under `migrations/` from code (the `migrate` command, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from agent_growth.settings import get_settings, postgres_url

# The source tree keeps migrations beside the package; the image sets the variable instead.
DEFAULT_MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(database_url: str | None = None) -> Config:
    directory = get_settings().migrations_dir or DEFAULT_MIGRATIONS_DIR
    config = Config()
    config.set_main_option("script_location", str(directory))
    config.attributes["database_url"] = postgres_url(database_url or get_settings().database_url)
    return config


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)
