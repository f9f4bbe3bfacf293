"""Task transitions against real PostgreSQL and Redis: claims, leases, cancellation, recovery."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth.db import engine
from agent_growth.db.models import BackgroundTask, CoverageHistory, WebhookOutbox
from agent_growth.errors import (
    AgentNotFound,
    QueueUnavailable,
    TaskAlreadyFinished,
    TaskNotFound,
)
from agent_growth.settings import get_settings
from agent_growth.tasks import lifecycle, queue
from tests import factories, running


@pytest.fixture
async def agent_id(session: AsyncSession) -> uuid.UUID:
    return await factories.small_corpus_agent(session)


async def fetch(task_id: str) -> BackgroundTask:
    async with engine.session_factory()() as session:
        task = await session.get(BackgroundTask, task_id)
        assert task is not None
        return task


async def submit(session: AsyncSession, redis: aioredis.Redis, agent_id: uuid.UUID, **kw) -> str:
    task = await lifecycle.submit(session, redis, agent_id=agent_id, **kw)
    return task.task_id


async def test_submit_commits_the_row_then_queues_it(session, redis_client, agent_id) -> None:
    task_id = await submit(session, redis_client, agent_id, priority="high")

    task = await fetch(task_id)
    assert task.status == "pending"
    assert task_id.startswith("agent-coverage-")
    assert await queue.position(redis_client, task_id=task_id, priority="high") == 1


async def test_submit_for_unknown_agent_is_refused(session, redis_client) -> None:
    with pytest.raises(AgentNotFound):
        await submit(session, redis_client, uuid.uuid4())


async def test_submit_with_redis_down_leaves_no_row(session, agent_id) -> None:
    unreachable = queue.connect("redis://127.0.0.1:1/0")

    with pytest.raises(QueueUnavailable):
        await submit(session, unreachable, agent_id)

    assert await session.scalar(select(func.count()).select_from(BackgroundTask)) == 0
    await unreachable.aclose()


async def test_only_one_of_two_racing_claims_wins(session, redis_client, agent_id) -> None:
    task_id = await submit(session, redis_client, agent_id)

    async def claim_as(worker_id: str) -> BackgroundTask | None:
        async with engine.session_factory()() as own:
            return await lifecycle.claim(own, task_id=task_id, worker_id=worker_id)

    results = await asyncio.gather(*(claim_as(f"w{i}") for i in range(5)))

    winners = [task for task in results if task is not None]
    assert len(winners) == 1
    task = await fetch(task_id)
    assert task.status == "running"
    assert task.attempts == 1
    assert task.lease_owner == winners[0].lease_owner


async def test_cancelling_a_pending_task_removes_it_for_good(
    session, redis_client, agent_id
) -> None:
    task_id = await submit(session, redis_client, agent_id, webhook_url="http://hooks.test/x")

    cancelled = await lifecycle.cancel(session, redis_client, task_id=task_id)

    assert cancelled.status == "cancelled"
    assert cancelled.completed_at is not None
    assert await queue.pop(redis_client) is None
    assert await lifecycle.claim(session, task_id=task_id, worker_id="late") is None
    event = await session.scalar(select(WebhookOutbox).where(WebhookOutbox.task_id == task_id))
    assert event is not None and event.payload["status"] == "cancelled"


async def test_cancelling_a_running_task_asks_its_worker(session, redis_client, agent_id) -> None:
    task_id = await submit(session, redis_client, agent_id)
    await lifecycle.claim(session, task_id=task_id, worker_id="w1")

    requested = await lifecycle.cancel(session, redis_client, task_id=task_id)

    assert requested.status == "running"
    assert await lifecycle.heartbeat(session, worker_id="w1", task_ids=[task_id]) == {task_id: True}


async def test_cancelling_a_finished_task_names_its_status(session, redis_client, agent_id) -> None:
    task_id = await submit(session, redis_client, agent_id)
    await lifecycle.claim(session, task_id=task_id, worker_id="w1")
    await lifecycle.finish(
        session, redis_client, task_id=task_id, worker_id="w1", status="failed", error="boom"
    )

    with pytest.raises(TaskAlreadyFinished) as raised:
        await lifecycle.cancel(session, redis_client, task_id=task_id)
    assert raised.value.status == "failed"
    with pytest.raises(TaskNotFound):
        await lifecycle.cancel(session, redis_client, task_id="agent-coverage-unknown")


async def test_a_worker_that_lost_its_lease_cannot_finish(
    session, redis_client, agent_id, monkeypatch
) -> None:
    monkeypatch.setenv("AGENT_GROWTH_LEASE_TTL_S", "0.1")
    monkeypatch.setenv("AGENT_GROWTH_HEARTBEAT_INTERVAL_S", "0.02")
    get_settings.cache_clear()
    task_id = await submit(session, redis_client, agent_id)
    await queue.pop(redis_client)
    await lifecycle.claim(session, task_id=task_id, worker_id="dead")
    await asyncio.sleep(0.3)

    reaped = await lifecycle.reap_expired(session, redis_client)
    assert [task.task_id for task in reaped] == [task_id]
    assert (await queue.pop(redis_client))[0] == task_id
    await lifecycle.claim(session, task_id=task_id, worker_id="alive")

    assert (
        await lifecycle.finish(
            session, redis_client, task_id=task_id, worker_id="dead", status="completed"
        )
        is None
    )
    task = await fetch(task_id)
    assert (task.status, task.lease_owner, task.attempts) == ("running", "alive", 2)


async def test_a_task_whose_workers_keep_dying_fails_after_max_attempts(
    session, redis_client, agent_id, monkeypatch
) -> None:
    monkeypatch.setenv("AGENT_GROWTH_LEASE_TTL_S", "0.05")
    monkeypatch.setenv("AGENT_GROWTH_HEARTBEAT_INTERVAL_S", "0.01")
    monkeypatch.setenv("AGENT_GROWTH_MAX_ATTEMPTS", "3")
    get_settings.cache_clear()
    task_id = await submit(session, redis_client, agent_id)

    for attempt in range(3):
        await lifecycle.claim(session, task_id=task_id, worker_id=f"doomed-{attempt}")
        await asyncio.sleep(0.15)
        await lifecycle.reap_expired(session, redis_client)

    task = await fetch(task_id)
    assert task.status == "failed"
    assert task.attempts == 3
    assert "3 attempts" in (task.error or "")
    assert task.completed_at is not None


async def test_pending_tasks_lost_by_redis_are_queued_again(
    session, redis_client, agent_id, monkeypatch
) -> None:
    monkeypatch.setattr(lifecycle, "REQUEUE_MIN_AGE_S", 0.0)
    low = await submit(session, redis_client, agent_id, priority="low")
    high = await submit(session, redis_client, agent_id, priority="high")
    await running.lose_redis_data(redis_client)

    assert await lifecycle.requeue_lost(session, redis_client) == 2
    assert await lifecycle.requeue_lost(session, redis_client) == 0
    assert [(await queue.pop(redis_client))[0] for _ in range(2)] == [high, low]


async def test_handing_back_does_not_count_the_attempt(session, redis_client, agent_id) -> None:
    task_id = await submit(session, redis_client, agent_id)
    await queue.pop(redis_client)
    await lifecycle.claim(session, task_id=task_id, worker_id="leaving")

    assert await lifecycle.hand_back(session, redis_client, task_id=task_id, worker_id="leaving")

    task = await fetch(task_id)
    assert (task.status, task.attempts, task.started_at) == ("pending", 0, None)
    assert await queue.position(redis_client, task_id=task_id, priority="medium") == 1


async def test_overdue_running_tasks_are_ended_as_timeout(session, redis_client, agent_id) -> None:
    task_id = await submit(session, redis_client, agent_id, timeout_seconds=1)
    await lifecycle.claim(session, task_id=task_id, worker_id="stuck")

    assert await lifecycle.expire_overdue(session, redis_client, grace_s=5) == []
    await asyncio.sleep(1.2)
    assert await lifecycle.expire_overdue(session, redis_client, grace_s=0) == [task_id]

    task = await fetch(task_id)
    assert task.status == "timeout"
    assert "deadline of 1 s" in (task.error or "")


async def test_a_heartbeat_renews_only_the_tasks_it_names(session, redis_client, agent_id) -> None:
    named = await submit(session, redis_client, agent_id)
    forgotten = await submit(session, redis_client, agent_id)
    await lifecycle.claim(session, task_id=named, worker_id="w1")
    await lifecycle.claim(session, task_id=forgotten, worker_id="w1")
    lease_before = (await fetch(forgotten)).lease_expires_at

    held = await lifecycle.heartbeat(session, worker_id="w1", task_ids=[named])

    assert held == {named: False}
    assert (await fetch(forgotten)).lease_expires_at == lease_before


async def test_tasks_ended_by_the_reaper_are_counted(
    session, redis_client, agent_id, monkeypatch
) -> None:
    monkeypatch.setenv("AGENT_GROWTH_LEASE_TTL_S", "0.05")
    monkeypatch.setenv("AGENT_GROWTH_HEARTBEAT_INTERVAL_S", "0.01")
    monkeypatch.setenv("AGENT_GROWTH_MAX_ATTEMPTS", "1")
    get_settings.cache_clear()
    failed_before = (
        REGISTRY.get_sample_value("agent_growth_tasks_finished_total", {"status": "failed"}) or 0.0
    )
    task_id = await submit(session, redis_client, agent_id)
    await lifecycle.claim(session, task_id=task_id, worker_id="doomed")
    await asyncio.sleep(0.15)

    await lifecycle.reap_expired(session, redis_client)

    assert (await fetch(task_id)).status == "failed"
    failed_after = REGISTRY.get_sample_value(
        "agent_growth_tasks_finished_total", {"status": "failed"}
    )
    assert failed_after == failed_before + 1


async def test_work_done_after_a_cancel_request_still_ends_cancelled(
    session, redis_client, agent_id
) -> None:
    task_id = await submit(session, redis_client, agent_id)
    await lifecycle.claim(session, task_id=task_id, worker_id="w1")
    await lifecycle.cancel(session, redis_client, task_id=task_id)

    ended = await lifecycle.finish(
        session,
        redis_client,
        task_id=task_id,
        worker_id="w1",
        status="completed",
        result={"overall_coverage": 50.0},
        history=CoverageHistory(
            agent_id=agent_id,
            task_id=task_id,
            overall_coverage=50.0,
            total_documents=1,
            total_chunks=1,
            version="1",
            node_coverage={},
        ),
    )

    assert ended is not None
    assert (ended.status, ended.result, ended.error) == (
        "cancelled",
        None,
        "cancelled while running",
    )
    assert await session.scalar(select(func.count()).select_from(CoverageHistory)) == 0


async def test_a_completed_task_keeps_its_result(session, redis_client, agent_id) -> None:
    task_id = await submit(session, redis_client, agent_id)
    await lifecycle.claim(session, task_id=task_id, worker_id="w1")

    ended = await lifecycle.finish(
        session,
        redis_client,
        task_id=task_id,
        worker_id="w1",
        status="completed",
        result={"overall_coverage": 50.0, "gaps": 2},
    )

    assert (ended.status, ended.progress_percentage) == ("completed", 100)
    assert (await fetch(task_id)).result == {"overall_coverage": 50.0, "gaps": 2}
