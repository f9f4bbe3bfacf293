"""The command line ends expected failures with one line naming the problem, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **{f"AGENT_GROWTH_{k.upper()}": v for k, v in settings.items()}}
    return subprocess.run(
        [sys.executable, "-m", "agent_growth", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def only_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"log_level": "LOUD"}, "AGENT_GROWTH_LOG_LEVEL: Input should be"),
        ({"redis_url": "http://x"}, "AGENT_GROWTH_REDIS_URL: must start with redis://"),
        ({"database_url": "mysql://x@127.0.0.1/db"}, "AGENT_GROWTH_DATABASE_URL: must be a Post"),
        ({"api_keys": ""}, "AGENT_GROWTH_API_KEYS: is empty"),
        ({"lease_ttl_s": "0.1"}, "AGENT_GROWTH_LEASE_TTL_S (0.1) must be at least three times"),
        ({"environment": "production", "api_keys": "dev-key"}, "not the development key"),
        ({"environment": "production", "api_keys": "change-me"}, "at least 24 characters"),
    ],
)
def test_a_bad_setting_is_named_on_one_line(settings: dict[str, str], message: str) -> None:
    done = run("migrate", **settings)

    assert done.returncode == 2
    assert message in only_line(done)


def test_loading_a_directory_without_a_taxonomy_says_so(tmp_path: Path) -> None:
    done = run("corpus", "load", str(tmp_path))

    assert done.returncode == 2
    assert only_line(done) == f"agent-growth: directory: {tmp_path} has no taxonomy.json"


def test_an_unreachable_database_is_one_line() -> None:
    done = run("migrate", database_url="postgresql+psycopg://postgres@127.0.0.1:1/nowhere")

    assert done.returncode == 1
    assert "cannot reach the database" in done.stderr.splitlines()[0]
    assert "Traceback" not in done.stderr


def test_the_operator_without_cluster_credentials_stops_saying_so(monkeypatch) -> None:
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    done = run("operator")

    assert done.returncode == 2
    assert "no Kubernetes credentials" in done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr


def test_postgres_urls_of_every_usual_spelling_are_migrated_with_psycopg(
    scratch_database: str,
) -> None:
    bare = scratch_database.replace("postgresql+psycopg://", "postgres://", 1)

    done = run("migrate", database_url=bare)

    assert done.returncode == 0, done.stderr
    assert "database schema is up to date" in done.stdout
