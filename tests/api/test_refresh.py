"""Submitting coverage refreshes: queueing, priorities and positions, following a task, and the
answers when Redis or the cluster cannot take it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import yaml
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth.api.app import create_app
from agent_growth.db.models import BackgroundTask
from agent_growth.settings import get_settings
from agent_growth.tasks import lifecycle, queue
from tests import factories
from tests.api.conftest import API_KEY, run_as_worker

Refresh = Callable[..., Awaitable[dict[str, Any]]]


def refresh_url(agent_id: uuid.UUID) -> str:
    return f"/api/v1/agents/{agent_id}/coverage/refresh"


async def task_count(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(BackgroundTask)) or 0


async def test_refresh_without_a_body_queues_a_pending_task(
    client: httpx.AsyncClient,
    session: AsyncSession,
    redis_client: aioredis.Redis,
    agent_id: uuid.UUID,
) -> None:
    response = await client.post(refresh_url(agent_id))

    assert response.status_code == 202, response.text
    task = response.json()
    assert task["status"] == "pending"
    assert task["priority"] == "medium"
    assert task["timeout_seconds"] == 300
    assert task["agent_id"] == str(agent_id)
    assert task["queue_position"] == 1
    location = response.headers["Location"]
    assert location == f"/api/v1/agents/{agent_id}/coverage/status/{task['task_id']}"
    assert await queue.position(redis_client, task_id=task["task_id"], priority="medium") == 1
    assert await task_count(session) == 1

    followed = await client.get(location)
    assert followed.status_code == 200
    assert followed.json()["task_id"] == task["task_id"]


async def test_refresh_with_an_empty_json_body_uses_the_defaults(
    client: httpx.AsyncClient, agent_id: uuid.UUID
) -> None:
    empty = await client.post(
        refresh_url(agent_id), content=b"", headers={"Content-Type": "application/json"}
    )
    braces = await client.post(refresh_url(agent_id), json={})

    assert empty.status_code == 202, empty.text
    assert braces.status_code == 202, braces.text
    assert braces.json()["priority"] == "medium"


async def test_options_are_recorded(
    client: httpx.AsyncClient, agent_id: uuid.UUID, refresh: Refresh
) -> None:
    task = await refresh(
        agent_id,
        priority="high",
        timeout_seconds=30,
        webhook_url="http://127.0.0.1:9/hook",
    )

    assert task["priority"] == "high"
    assert task["timeout_seconds"] == 30
    assert task["webhook_url"] == "http://127.0.0.1:9/hook"


async def test_positions_follow_priority_then_arrival(
    client: httpx.AsyncClient, agent_id: uuid.UUID, refresh: Refresh
) -> None:
    low = (await refresh(agent_id, priority="low"))["task_id"]
    medium = (await refresh(agent_id, priority="medium"))["task_id"]
    high = (await refresh(agent_id, priority="high"))["task_id"]
    later_medium = (await refresh(agent_id, priority="medium"))["task_id"]

    async def position(task_id: str) -> int:
        response = await client.get(f"/api/v1/agents/{agent_id}/coverage/status/{task_id}")
        return response.json()["queue_position"]

    assert [await position(t) for t in (high, medium, later_medium, low)] == [1, 2, 3, 4]


async def test_status_follows_the_task_through_its_worker(
    client: httpx.AsyncClient,
    session: AsyncSession,
    redis_client: aioredis.Redis,
    agent_id: uuid.UUID,
    refresh: Refresh,
) -> None:
    task_id = (await refresh(agent_id))["task_id"]
    status_url = f"/api/v1/agents/{agent_id}/coverage/status/{task_id}"

    await run_as_worker(session, redis_client, task_id, status=None)
    running = (await client.get(status_url)).json()
    await lifecycle.finish(
        session,
        redis_client,
        task_id=task_id,
        worker_id="api-test-worker",
        status="completed",
        result={"overall_coverage": 83.33},
    )
    completed = (await client.get(status_url)).json()

    assert running["status"] == "running"
    assert running["queue_position"] is None
    assert running["started_at"].endswith("+00:00")
    assert running["attempts"] == 1
    assert completed["status"] == "completed"
    assert completed["progress_percentage"] == 100
    assert completed["result"] == {"overall_coverage": 83.33}
    assert completed["completed_at"] >= completed["started_at"]


async def test_status_of_another_agents_task_is_404(
    client: httpx.AsyncClient, session: AsyncSession, agent_id: uuid.UUID, refresh: Refresh
) -> None:
    other_agent = await factories.make_agent(session, [], name="other")
    task_id = (await refresh(agent_id))["task_id"]

    other = await client.get(f"/api/v1/agents/{other_agent}/coverage/status/{task_id}")
    unknown_task = await client.get(f"/api/v1/agents/{agent_id}/coverage/status/nope")
    unknown_agent = await client.get(f"/api/v1/agents/{uuid.uuid4()}/coverage/status/{task_id}")

    assert other.status_code == 404
    assert task_id in other.json()["detail"]
    assert unknown_task.status_code == 404
    assert unknown_agent.status_code == 404
    assert "agent" in unknown_agent.json()["detail"]


async def test_refresh_of_an_unknown_agent_is_404_and_leaves_nothing(
    client: httpx.AsyncClient, session: AsyncSession, redis_client: aioredis.Redis
) -> None:
    response = await client.post(refresh_url(uuid.uuid4()))

    assert response.status_code == 404
    assert await task_count(session) == 0
    assert await queue.depth(redis_client) == {"high": 0, "medium": 0, "low": 0}


async def test_private_webhook_targets_are_refused_when_not_allowed(
    monkeypatch: pytest.MonkeyPatch,
    client: httpx.AsyncClient,
    session: AsyncSession,
    agent_id: uuid.UUID,
) -> None:
    monkeypatch.setenv("AGENT_GROWTH_WEBHOOK_ALLOW_PRIVATE", "false")
    get_settings.cache_clear()

    for url in ("http://169.254.169.254/latest/meta-data", "http://localhost:8080/hook"):
        response = await client.post(refresh_url(agent_id), json={"webhook_url": url})
        assert response.status_code == 422, url
        assert response.json()["detail"][0]["loc"] == ["body", "webhook_url"]
    assert await task_count(session) == 0


async def test_redis_down_answers_503_and_leaves_no_row(
    monkeypatch: pytest.MonkeyPatch, session: AsyncSession, agent_id: uuid.UUID
) -> None:
    monkeypatch.setenv("AGENT_GROWTH_REDIS_URL", "redis://127.0.0.1:1/0")
    get_settings.cache_clear()
    app = create_app()

    async with (
        LifespanManager(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api.test",
            headers={"X-API-Key": API_KEY},
        ) as http,
    ):
        response = await http.post(refresh_url(agent_id), json={"priority": "high"})

    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert "queue" in response.json()["detail"]
    assert await task_count(session) == 0


def write_kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server}}],
        "users": [{"name": "test", "user": {"token": "test-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "current-context": "test",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def cluster_mode(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Path], None]:
    def enable(server: str, tmp_path: Path) -> None:
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", server)))
        monkeypatch.setenv("AGENT_GROWTH_KUBERNETES", "on")
        monkeypatch.setenv("AGENT_GROWTH_KUBERNETES_NAMESPACE", "coverage")
        get_settings.cache_clear()

    return enable


async def test_cluster_mode_creates_a_resource_named_after_the_task(
    cluster_mode: Callable[[str, Path], None],
    tmp_path: Path,
    kmock: Any,
    client: httpx.AsyncClient,
    session: AsyncSession,
    redis_client: aioredis.Redis,
    agent_id: uuid.UUID,
) -> None:
    cluster_mode(str(kmock.url), tmp_path)

    response = await client.post(refresh_url(agent_id), json={"priority": "low"})

    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    task = await session.get(BackgroundTask, task_id)
    assert task is not None and task.resource_namespace == "coverage"
    resource = kmock.objects["agentgrowth.io/v1alpha1/coveragerefreshes", "coverage", task_id]
    assert resource.raw["metadata"]["labels"] == {"agentgrowth.io/task-id": task_id}
    assert resource.raw["spec"]["agentId"] == str(agent_id)
    assert resource.raw["spec"]["priority"] == "low"
    assert resource.raw["spec"]["activeDeadlineSeconds"] == 300
    # The operator queues it, not the API.
    assert await queue.depth(redis_client) == {"high": 0, "medium": 0, "low": 0}


async def test_cluster_unreachable_answers_503_and_leaves_no_row(
    cluster_mode: Callable[[str, Path], None],
    tmp_path: Path,
    client: httpx.AsyncClient,
    session: AsyncSession,
    agent_id: uuid.UUID,
) -> None:
    cluster_mode("https://127.0.0.1:1", tmp_path)

    response = await client.post(refresh_url(agent_id))

    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert "Kubernetes" in response.json()["detail"]
    assert await task_count(session) == 0
