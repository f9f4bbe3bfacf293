"""Tasks through the API: cancelling in each state, reading by id, and listing with filters."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from redis.asyncio.client import Pipeline
from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth.tasks import queue
from tests import factories
from tests.api.conftest import Corpus, run_as_worker

Refresh = Callable[..., Awaitable[dict[str, Any]]]
TASKS = "/api/v1/agents/tasks"


async def test_cancelling_a_pending_task_ends_it_and_takes_it_off_the_queue(
    client: httpx.AsyncClient,
    redis_client: aioredis.Redis,
    agent_id: uuid.UUID,
    refresh: Refresh,
) -> None:
    first = (await refresh(agent_id, priority="high"))["task_id"]
    second = (await refresh(agent_id, priority="high"))["task_id"]
    assert await queue.position(redis_client, task_id=second, priority="high") == 2

    response = await client.delete(f"{TASKS}/{first}")

    assert response.status_code == 204
    cancelled = (await client.get(f"{TASKS}/{first}")).json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["completed_at"] is not None
    assert await queue.position(redis_client, task_id=first, priority="high") is None
    assert await queue.position(redis_client, task_id=second, priority="high") == 1
    assert (await client.get(f"{TASKS}/{second}")).json()["queue_position"] == 1


async def test_cancelling_a_running_task_asks_its_worker_to_stop(
    client: httpx.AsyncClient,
    session: AsyncSession,
    redis_client: aioredis.Redis,
    agent_id: uuid.UUID,
    refresh: Refresh,
) -> None:
    task_id = (await refresh(agent_id))["task_id"]
    await run_as_worker(session, redis_client, task_id, status=None)

    response = await client.delete(f"{TASKS}/{task_id}")

    assert response.status_code == 204
    task = (await client.get(f"{TASKS}/{task_id}")).json()
    assert task["status"] == "running"
    assert task["cancellation_requested"] is True


async def test_cancelling_a_finished_task_is_409_naming_its_status(
    client: httpx.AsyncClient,
    session: AsyncSession,
    redis_client: aioredis.Redis,
    agent_id: uuid.UUID,
    refresh: Refresh,
) -> None:
    completed = (await refresh(agent_id))["task_id"]
    await run_as_worker(session, redis_client, completed)
    failed = (await refresh(agent_id))["task_id"]
    await run_as_worker(session, redis_client, failed, status="failed")
    cancelled = (await refresh(agent_id))["task_id"]
    assert (await client.delete(f"{TASKS}/{cancelled}")).status_code == 204

    for task_id, status in ((completed, "completed"), (failed, "failed"), (cancelled, "cancelled")):
        response = await client.delete(f"{TASKS}/{task_id}")
        assert response.status_code == 409
        assert response.json()["status"] == status
        assert repr(status) in response.json()["detail"]


async def test_cancelling_or_reading_an_unknown_task_is_404(client: httpx.AsyncClient) -> None:
    cancel = await client.delete(f"{TASKS}/agent-coverage-{uuid.uuid4()}")
    read = await client.get(f"{TASKS}/no-such-task")

    assert cancel.status_code == 404
    assert "not found" in cancel.json()["detail"]
    assert read.status_code == 404


async def test_listing_is_newest_first_and_pages_without_gaps(
    client: httpx.AsyncClient, agent_id: uuid.UUID, refresh: Refresh
) -> None:
    submitted = [(await refresh(agent_id))["task_id"] for _ in range(5)]

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        response = await client.get(TASKS, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [task["task_id"] for task in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]

    assert seen == list(reversed(submitted))


async def test_listing_filters_by_status_and_agent(
    client: httpx.AsyncClient,
    session: AsyncSession,
    corpus: Corpus,
    agent_id: uuid.UUID,
    refresh: Refresh,
) -> None:
    other_agent = await factories.make_agent(session, [corpus.nodes["Arts"]], name="other")
    mine_pending = (await refresh(agent_id))["task_id"]
    mine_cancelled = (await refresh(agent_id))["task_id"]
    await client.delete(f"{TASKS}/{mine_cancelled}")
    theirs = (await refresh(other_agent))["task_id"]

    async def ids(**params: str) -> list[str]:
        response = await client.get(TASKS, params=params)
        assert response.status_code == 200, response.text
        return [task["task_id"] for task in response.json()["items"]]

    assert await ids(status="pending") == [theirs, mine_pending]
    assert await ids(status="cancelled") == [mine_cancelled]
    assert await ids(agent_id=str(agent_id)) == [mine_cancelled, mine_pending]
    assert await ids(agent_id=str(other_agent), status="cancelled") == []


async def test_listing_refuses_an_unknown_status_naming_the_allowed_ones(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(TASKS, params={"status": "done"})

    assert response.status_code == 422
    error = response.json()["detail"][0]
    assert error["loc"] == ["query", "status"]
    for allowed in ("pending", "running", "completed", "failed", "cancelled", "timeout"):
        assert allowed in error["msg"]


async def test_a_cursor_is_refused_with_other_filters(
    client: httpx.AsyncClient, agent_id: uuid.UUID, refresh: Refresh
) -> None:
    for _ in range(3):
        await refresh(agent_id)
    page = (await client.get(TASKS, params={"limit": 1, "status": "pending"})).json()
    cursor = page["next_cursor"]
    assert cursor is not None

    for filters in ({}, {"status": "cancelled"}, {"status": "pending", "agent_id": str(agent_id)}):
        response = await client.get(TASKS, params={"limit": 1, "cursor": cursor, **filters})
        assert response.status_code == 422, (filters, response.text)
        [error] = response.json()["detail"]
        assert error["loc"] == ["query", "cursor"]
        assert "was returned for other filters" in error["msg"]

    same = await client.get(TASKS, params={"limit": 5, "cursor": cursor, "status": "pending"})
    assert same.status_code == 200, same.text
    assert len(same.json()["items"]) == 2


async def test_listing_shows_the_queue_position_of_pending_tasks(
    client: httpx.AsyncClient,
    session: AsyncSession,
    redis_client: aioredis.Redis,
    agent_id: uuid.UUID,
    refresh: Refresh,
) -> None:
    low = (await refresh(agent_id, priority="low"))["task_id"]
    running = (await refresh(agent_id, priority="high"))["task_id"]
    await run_as_worker(session, redis_client, running, status=None)
    medium = (await refresh(agent_id, priority="medium"))["task_id"]
    high = (await refresh(agent_id, priority="high"))["task_id"]
    cancelled = (await refresh(agent_id, priority="high"))["task_id"]
    await client.delete(f"{TASKS}/{cancelled}")

    response = await client.get(TASKS)

    assert response.status_code == 200, response.text
    positions = {task["task_id"]: task["queue_position"] for task in response.json()["items"]}
    assert positions == {high: 1, medium: 2, low: 3, running: None, cancelled: None}
    for task_id in (high, medium, low):
        status = (await client.get(f"{TASKS}/{task_id}")).json()
        assert status["queue_position"] == positions[task_id]


async def test_listing_reads_every_queue_position_in_one_redis_round_trip_for_the_page(
    app: FastAPI,
    client: httpx.AsyncClient,
    agent_id: uuid.UUID,
    refresh: Refresh,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for priority in ("low", "medium", "high", "high", "low"):
        await refresh(agent_id, priority=priority)
    redis: aioredis.Redis = app.state.redis
    round_trips: list[str] = []
    execute_command = redis.execute_command
    execute_pipeline = Pipeline.execute

    async def count_command(*args: Any, **options: Any) -> Any:
        round_trips.append(str(args[0]))
        return await execute_command(*args, **options)

    async def count_pipeline(pipe: Pipeline, raise_on_error: bool = True) -> list[Any]:
        round_trips.append("pipeline")
        return await execute_pipeline(pipe, raise_on_error)

    monkeypatch.setattr(redis, "execute_command", count_command)
    monkeypatch.setattr(Pipeline, "execute", count_pipeline)

    response = await client.get(TASKS)

    assert response.status_code == 200, response.text
    assert sorted(task["queue_position"] for task in response.json()["items"]) == [1, 2, 3, 4, 5]
    # One pipeline for every position of the page, and one read of the workers' capacity for
    # the ETAs, however long the page.
    assert round_trips == ["pipeline", "ZRANGEBYSCORE"]
