"""The demo is the README's first command: it runs the whole job and leaves nothing running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
from sqlalchemy.engine import make_url

from agent_growth.db import engine as db_engine

# The demo polls for up to a minute per stage; a slow machine gets the rest.
DEMO_TIMEOUT_S = 240


def _processes_using(database: str) -> list[int]:
    """Processes whose environment points at `database`: what the demo would leave behind."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"/{database}".encode() in environ and b"AGENT_GROWTH_DATABASE_URL" in environ:
            found.append(int(entry.name))
    return found


@pytest.mark.timeout(DEMO_TIMEOUT_S + 30)
def test_the_demo_refreshes_every_agent_twice_and_stops_what_it_started(
    database_url: str,
) -> None:
    url = make_url(database_url)
    database = f"{url.database}_demo"
    redis_db = 14  # beside the suite's own 15; keys carry the checkout's prefix
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "agent_growth",
                "demo",
                "--database",
                database,
                "--redis-db",
                str(redis_db),
            ],
            capture_output=True,
            text=True,
            timeout=DEMO_TIMEOUT_S,
            env={**os.environ, "COLUMNS": "200"},
        )

        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        out = done.stdout
        growth = re.findall(r"history \(2 refreshes\): ([\d.]+) % -> ([\d.]+) %", out)
        assert len(growth) == 3, out
        assert all(float(before) < float(after) for before, after in growth), growth
        assert re.search(r"Culture guide \(cancelled\).*cancelled", out), out
        assert "1 received, 1 with a valid signature" in out
        assert "every process it started is stopped" in out
        assert _processes_using(database) == []
    finally:
        maintenance = db_engine.psycopg_dsn(url.set(database="postgres").render_as_string(False))
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        redis_url = urlsplit(os.environ["AGENT_GROWTH_REDIS_URL"])._replace(path=f"/{redis_db}")
        prefix = os.environ["AGENT_GROWTH_REDIS_PREFIX"]  # the checkout's, which the demo inherits
        with redis.Redis.from_url(redis_url.geturl()) as client:
            stale = list(client.scan_iter(match=f"{prefix}:*"))
            if stale:
                client.delete(*stale)
