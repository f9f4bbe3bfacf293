"""Health probes and metrics: liveness needs nothing, readiness names the dependency that is down,
and `/metrics` counts requests by route template and reports the queue as Redis holds it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client.parser import text_string_to_metric_families

from agent_growth.api.app import create_app
from agent_growth.db import engine as db_engine
from agent_growth.settings import get_settings

NOTHING_LISTENS_REDIS = "redis://127.0.0.1:1/0"
NOTHING_LISTENS_POSTGRESQL = "postgresql+psycopg://postgres@127.0.0.1:1/agent_growth"


@asynccontextmanager
async def keyless_client() -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends no API key, over an app built from the environment as it is now."""
    get_settings.cache_clear()
    await db_engine.dispose()
    app = create_app()
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        yield http


async def test_liveness_answers_without_a_key() -> None:
    async with keyless_client() as http:
        response = await http.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


async def test_ready_when_postgresql_and_redis_answer() -> None:
    async with keyless_client() as http:
        response = await http.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"postgresql": "ok", "redis": "ok"}}


async def test_not_ready_names_redis_when_it_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_GROWTH_REDIS_URL", NOTHING_LISTENS_REDIS)

    async with keyless_client() as http:
        response = await http.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["postgresql"] == "ok"
    assert body["checks"]["redis"].startswith("down")


async def test_not_ready_names_postgresql_when_it_is_down_but_stays_alive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENT_GROWTH_DATABASE_URL", NOTHING_LISTENS_POSTGRESQL)

    async with keyless_client() as http:
        ready = await http.get("/readyz")
        alive = await http.get("/healthz")

    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"] == "ok"
    assert body["checks"]["postgresql"] != "ok"
    assert alive.status_code == 200


def samples(exposition: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name
    }


async def test_metrics_count_requests_by_route_template_and_show_the_queue(
    client: httpx.AsyncClient, agent_id: uuid.UUID
) -> None:
    not_found = (("method", "GET"), ("route", "/api/v1/agents/{agent_id}"), ("status", "404"))
    before = samples((await client.get("/metrics")).text, "agent_growth_http_requests_total")
    for _ in range(3):
        await client.get(f"/api/v1/agents/{uuid.uuid4()}")
    for priority in ("high", "high", "low"):
        await client.post(
            f"/api/v1/agents/{agent_id}/coverage/refresh", json={"priority": priority}
        )

    exposition = (await client.get("/metrics")).text

    after = samples(exposition, "agent_growth_http_requests_total")
    assert after[not_found] - before.get(not_found, 0.0) == 3
    depth = samples(exposition, "agent_growth_queue_depth")
    assert depth == {
        (("priority", "high"),): 2.0,
        (("priority", "medium"),): 0.0,
        (("priority", "low"),): 1.0,
    }


async def test_readiness_does_not_wait_behind_requests_holding_every_pooled_connection() -> None:
    async with keyless_client() as http:
        pool = db_engine.engine().pool
        # Every connection requests may have: the pool itself and its overflow.
        capacity = pool.size() + pool._max_overflow  # type: ignore[attr-defined]
        held = [await db_engine.engine().connect() for _ in range(capacity)]
        try:
            response = await http.get("/readyz")
        finally:
            for connection in held:
                await connection.close()

    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"postgresql": "ok", "redis": "ok"}


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_probes_answer_head_like_get_without_a_body(path: str) -> None:
    async with keyless_client() as http:
        get = await http.get(path)
        head = await http.head(path)

    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == str(len(get.content))


async def test_readiness_head_is_503_when_a_dependency_is_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENT_GROWTH_REDIS_URL", NOTHING_LISTENS_REDIS)

    async with keyless_client() as http:
        response = await http.head("/readyz")

    assert response.status_code == 503
    assert response.content == b""


async def test_an_unmigrated_database_is_not_ready_and_says_to_migrate(
    monkeypatch: pytest.MonkeyPatch, scratch_database: str
) -> None:
    monkeypatch.setenv("AGENT_GROWTH_DATABASE_URL", scratch_database)

    async with keyless_client() as http:
        ready = await http.get("/readyz")
        listing = await http.get("/api/v1/agents", headers={"X-API-Key": "test-key"})

    assert ready.status_code == 503
    assert "agent-growth migrate" in ready.json()["checks"]["postgresql"]
    assert listing.status_code == 503
    assert "agent-growth migrate" in listing.json()["detail"]
