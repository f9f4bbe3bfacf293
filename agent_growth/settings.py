"""Every setting of Agent Growth, read from `AGENT_GROWTH_*` environment variables.

The defaults suit a developer's machine, where PostgreSQL and Redis listen on 127.0.0.1. Outside
`environment=development` the settings refuse the defaults that would be unsafe in a cluster: a
missing API key, or webhooks allowed to reach private addresses.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_API_KEY = "dev-key"

# A guessable key is no key: 24 characters of hex carry 96 bits.
MIN_PRODUCTION_KEY_CHARS = 24


def postgres_url(value: str) -> str:
    """`value` as the SQLAlchemy URL of PostgreSQL with psycopg 3; ValueError for another server.

    SQLAlchemy reads a bare postgresql:// as psycopg2, which is not installed, and does not know
    postgres:// at all; both name the same server, so both are taken.
    """
    scheme, separator, rest = value.partition("://")
    if not separator or scheme not in {"postgresql+psycopg", "postgresql", "postgres"}:
        raise ValueError(
            "must be a PostgreSQL URL: postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE"
        )
    return f"postgresql+psycopg://{rest}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENT_GROWTH_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    """`production` refuses the development API key and private webhook targets."""

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/agent_growth"
    """URL of the PostgreSQL database: postgresql+psycopg://, or postgresql:// or postgres://,
    which mean the same here (the driver is always psycopg 3)."""

    database_pool_size: int = Field(default=10, ge=1)
    """Connections each process keeps to PostgreSQL (as many again may open under load). A
    worker needs about one per task slot plus two for its heartbeat and reconciler."""

    migrations_dir: Path | None = None
    """Where the Alembic migrations live; unset means `migrations/` beside the package source."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis that carries the queue and the cancellation signals."""

    redis_prefix: str = "agent"
    """First part of every Redis key, so that two installations can share one Redis."""

    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=lambda: [DEV_API_KEY])
    """Comma-separated keys accepted in the `X-API-Key` header."""

    webhook_secret: SecretStr | None = None
    """When set, webhook bodies are signed with HMAC-SHA256 in `X-Agent-Growth-Signature`."""

    webhook_allow_private: bool = False
    """Let webhooks reach loopback and private addresses (local demos and tests only)."""

    webhook_timeout_s: float = 10.0
    """Time one webhook attempt may take, connecting included."""

    webhook_max_attempts: int = Field(default=3, ge=1, le=10)
    """Attempts per webhook event before it is given up."""

    lease_ttl_s: float = Field(default=5.0, gt=0)
    """A running task whose worker has not heartbeaten for this long is taken again."""

    heartbeat_interval_s: float = Field(default=0.5, gt=0)
    """How often a worker renews its leases and checks for cancellation."""

    max_attempts: int = Field(default=3, ge=1)
    """A task whose workers died this many times fails instead of being taken again."""

    reconcile_interval_s: float = Field(default=2.0, gt=0)
    """How often workers re-queue lost tasks and reclaim expired leases."""

    deadline_grace_s: float = Field(default=10.0, ge=0)
    """Past its deadline plus this, a task whose worker did not stop it is ended as timeout by
    the other workers (and, in a cluster, by the operator)."""

    worker_drain_timeout_s: float = Field(default=30.0, ge=0)
    """On SIGTERM a worker lets running tasks finish this long, then hands the rest back."""

    worker_step_delay_s: float = Field(default=0.0, ge=0)
    """Pause after each stage of a refresh; lets demos and tests watch a running task."""

    kubernetes: bool = False
    """Cluster mode: the API creates CoverageRefresh resources instead of queueing itself."""

    kubernetes_namespace: str = "default"
    """Namespace of the CoverageRefresh resources the API creates."""

    operator_status_interval_s: float = Field(default=1.0, gt=0)
    """The operator writes one resource's status at most this often; changes in between merge."""

    operator_poll_interval_s: float = Field(default=5.0, gt=0)
    """The operator re-reads each unfinished task this often even without a Redis signal."""

    operator_backstop_interval_s: float = Field(default=5.0, gt=0)
    """How often the operator looks for running tasks past their deadline."""

    operator_drift_interval_s: float = Field(default=60.0, gt=0)
    """How often the operator cancels tasks whose CoverageRefresh resource has vanished."""

    operator_drift_min_age_s: float = Field(default=30.0, ge=0)
    """Tasks younger than this are left out of the drift check: the API writes the row first."""

    operator_cancel_wait_s: float = Field(default=5.0, ge=0)
    """Deleting a resource waits up to this long for its running task to stop, then lets go."""

    operator_peering_name: str = "agent-growth"
    """Name of the kopf peering object through which operator replicas elect the active one."""

    operator_peering_priority: int | None = None
    """Priority of this replica in peering; unset picks a random one, so one replica leads."""

    log_format: Literal["text", "json"] = "text"
    """`json` writes one JSON object per line, for log collectors; `text` suits a terminal."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """The least severe records written."""

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("api_keys")
    @classmethod
    def _some_key(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("is empty, so no request could authenticate; give at least one key")
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_with_psycopg(cls, value: str) -> str:
        return postgres_url(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("kubernetes", mode="before")
    @classmethod
    def _on_off(cls, value: object) -> object:
        if isinstance(value, str) and value.lower() in {"on", "off"}:
            return value.lower() == "on"
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _leases_outlive_heartbeats(self) -> Settings:
        # Leases are renewed every heartbeat; one delayed renewal must not look like a death.
        if self.lease_ttl_s < 3 * self.heartbeat_interval_s:
            raise ValueError(
                f"AGENT_GROWTH_LEASE_TTL_S ({self.lease_ttl_s}) must be at least three times"
                f" AGENT_GROWTH_HEARTBEAT_INTERVAL_S ({self.heartbeat_interval_s})"
            )
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment != "production":
            return self
        if not self.api_keys or DEV_API_KEY in self.api_keys:
            raise ValueError(
                "AGENT_GROWTH_API_KEYS must list real keys in production, not the development key"
            )
        if any(len(key) < MIN_PRODUCTION_KEY_CHARS for key in self.api_keys):
            raise ValueError(
                f"AGENT_GROWTH_API_KEYS: each key must have at least {MIN_PRODUCTION_KEY_CHARS}"
                " characters in production, e.g. from `openssl rand -hex 24`"
            )
        if self.webhook_allow_private:
            raise ValueError("AGENT_GROWTH_WEBHOOK_ALLOW_PRIVATE must be false in production")
        return self


@functools.cache
def get_settings() -> Settings:
    return Settings()
