"""Local mode: the API and workers as child processes of one command, without a cluster.

The demo and the end-to-end benchmarks both need a throwaway installation: a fresh database,
an empty Redis database, the API on a free port and a few workers. `LocalStack` is that, and it
stops every process it started when its block ends, however it ends.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import psycopg
import redis
from psycopg import sql
from sqlalchemy.engine import make_url

from agent_growth.db import engine, migrate
from agent_growth.settings import get_settings

# Time a child process gets to drain after SIGTERM before it is killed.
STOP_GRACE_S = 15.0

READY_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalStack:
    """A throwaway installation in database `database` and Redis database `redis_db`."""

    database: str
    redis_db: int
    api_key: str
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)

    @property
    def env(self) -> dict[str, str]:
        settings = get_settings()
        database_url = make_url(settings.database_url).set(database=self.database)
        redis_url = urlsplit(settings.redis_url)._replace(path=f"/{self.redis_db}").geturl()
        return {
            "AGENT_GROWTH_DATABASE_URL": database_url.render_as_string(hide_password=False),
            "AGENT_GROWTH_REDIS_URL": redis_url,
            "AGENT_GROWTH_API_KEYS": self.api_key,
            **self.extra_env,
        }

    @property
    def redis_prefix(self) -> str:
        """The prefix of every Redis key the processes write (inherited unless overridden)."""
        return self.extra_env.get("AGENT_GROWTH_REDIS_PREFIX") or get_settings().redis_prefix

    @property
    def database_url(self) -> str:
        return self.env["AGENT_GROWTH_DATABASE_URL"]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Drop and recreate the database, migrate it, and delete its keys in Redis."""
        url = make_url(self.database_url)
        maintenance = engine.psycopg_dsn(url.set(database="postgres").render_as_string(False))
        name = sql.Identifier(self.database)
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
        # Only this installation's keys: the Redis database may be shared with another checkout.
        with redis.Redis.from_url(self.env["AGENT_GROWTH_REDIS_URL"]) as client:
            stale = list(client.scan_iter(match=f"{self.redis_prefix}:*", count=1000))
            if stale:
                client.delete(*stale)
        migrate.upgrade(self.database_url)

    @contextlib.contextmanager
    def running(self, *, workers: int = 2, concurrency: int = 1) -> Iterator[httpx.Client]:
        """The API and `workers` worker processes; yields a client for the API, once ready."""
        child_env = {**os.environ, **self.env}
        command = [sys.executable, "-m", "agent_growth"]
        processes = [subprocess.Popen([*command, "api", "--port", str(self.port)], env=child_env)]
        processes += [
            subprocess.Popen([*command, "worker", "--concurrency", str(concurrency)], env=child_env)
            for _ in range(workers)
        ]
        try:
            with httpx.Client(
                base_url=self.base_url, headers={"X-API-Key": self.api_key}, timeout=10
            ) as client:
                _wait_until_ready(client)
                yield client
        finally:
            _stop(processes)


def _wait_until_ready(client: httpx.Client) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if client.get("/readyz").status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the API did not become ready within {READY_TIMEOUT_S:.0f} s")


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
