"""Workers end to end: a submitted refresh runs to a recorded outcome, whatever befalls it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth.db.models import Agent, CoverageHistory
from agent_growth.settings import get_settings
from agent_growth.tasks import lifecycle, queue
from agent_growth.worker.runner import Worker
from tests import factories, running
from tests.running import running_worker
from tests.webhooks.receiver import Receiver
from tests.worker.conftest import fetch_task, wait_for_status


@pytest.fixture
async def agent_id(session: AsyncSession) -> uuid.UUID:
    return await factories.small_corpus_agent(session)


def slow_steps(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    monkeypatch.setenv("AGENT_GROWTH_WORKER_STEP_DELAY_S", str(seconds))
    get_settings.cache_clear()


async def history_count(session: AsyncSession, task_id: str | None = None) -> int:
    statement = select(func.count()).select_from(CoverageHistory)
    if task_id is not None:
        statement = statement.where(CoverageHistory.task_id == task_id)
    return await session.scalar(statement) or 0


async def test_a_refresh_records_history_and_the_agents_coverage(
    session, redis_client, agent_id
) -> None:
    task = await lifecycle.submit(session, redis_client, agent_id=agent_id)

    async with running_worker():
        done = await wait_for_status(task.task_id, "completed", "failed")

    assert done.status == "completed", done.error
    assert done.progress_percentage == 100
    assert done.started_at <= done.completed_at
    # Science (3 docs), Birds (2), Plants (2), each with target 2: all covered.
    assert done.result["overall_coverage"] == 100.0
    assert done.result["total_documents"] == 3
    assert done.result["total_chunks"] == 6
    history = await session.scalar(select(CoverageHistory))
    assert history.task_id == task.task_id
    assert history.timestamp == done.completed_at
    assert history.node_coverage["Science.Birds"] == {
        "documents": 2,
        "target": 2,
        "coverage": 100.0,
    }
    agent = await session.get(Agent, agent_id, populate_existing=True)
    assert (agent.coverage_percent, agent.total_documents) == (100.0, 3)


async def test_a_refresh_past_its_deadline_ends_as_timeout(
    session, redis_client, agent_id, monkeypatch
) -> None:
    slow_steps(monkeypatch, 0.8)
    task = await lifecycle.submit(session, redis_client, agent_id=agent_id, timeout_seconds=1)

    async with running_worker():
        done = await wait_for_status(task.task_id, "timeout", "completed", "failed")

    assert done.status == "timeout"
    assert done.error == "exceeded its deadline of 1 s"
    assert await history_count(session) == 0


async def test_cancelling_a_running_refresh_stops_it(
    session, redis_client, agent_id, monkeypatch
) -> None:
    slow_steps(monkeypatch, 2.0)
    task = await lifecycle.submit(session, redis_client, agent_id=agent_id)

    async with running_worker():
        await wait_for_status(task.task_id, "running")
        await lifecycle.cancel(session, redis_client, task_id=task.task_id)
        done = await wait_for_status(task.task_id, "cancelled", "completed", timeout_s=5)

    assert done.status == "cancelled"
    assert done.error == "cancelled while running"
    assert done.progress_percentage < 100
    assert await history_count(session) == 0


async def test_many_tasks_on_two_workers_each_run_exactly_once(
    session, redis_client, agent_id
) -> None:
    task_ids = [
        (await lifecycle.submit(session, redis_client, agent_id=agent_id)).task_id
        for _ in range(20)
    ]

    async with running_worker(concurrency=2), running_worker(concurrency=2):
        for task_id in task_ids:
            await wait_for_status(task_id, "completed")

    assert await history_count(session) == 20
    assert {(await fetch_task(task_id)).attempts for task_id in task_ids} == {1}


async def test_tasks_lost_by_redis_still_run(session, redis_client, agent_id) -> None:
    task_ids = [
        (await lifecycle.submit(session, redis_client, agent_id=agent_id)).task_id for _ in range(3)
    ]
    await running.lose_redis_data(redis_client)
    assert await queue.depth(redis_client) == {"high": 0, "medium": 0, "low": 0}

    async with running_worker():
        for task_id in task_ids:
            done = await wait_for_status(task_id, "completed", timeout_s=20)
            assert done.attempts == 1


async def test_a_killed_workers_task_is_taken_again_within_seconds(
    session, redis_client, agent_id, spawn_worker
) -> None:
    task = await lifecycle.submit(session, redis_client, agent_id=agent_id)
    doomed = spawn_worker(worker_step_delay_s=30, lease_ttl_s=1.5)
    await wait_for_status(task.task_id, "running", timeout_s=20)

    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    spawn_worker(lease_ttl_s=1.5, reconcile_interval_s=0.5)

    done = await wait_for_status(task.task_id, "completed", timeout_s=20)
    assert done.attempts == 2
    assert await history_count(session, task.task_id) == 1


async def test_sigterm_hands_back_a_task_it_cannot_finish(
    session, redis_client, agent_id, spawn_worker
) -> None:
    task = await lifecycle.submit(session, redis_client, agent_id=agent_id)
    leaving = spawn_worker(worker_step_delay_s=30, worker_drain_timeout_s=0.5)
    await wait_for_status(task.task_id, "running", timeout_s=20)

    leaving.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(leaving.wait, 15) == 0

    handed_back = await fetch_task(task.task_id)
    assert (handed_back.status, handed_back.attempts) == ("pending", 0)
    assert await queue.position(redis_client, task_id=task.task_id, priority="medium") == 1


async def test_sigterm_lets_a_running_task_finish_first(
    session, redis_client, agent_id, spawn_worker
) -> None:
    task = await lifecycle.submit(session, redis_client, agent_id=agent_id)
    leaving = spawn_worker(worker_step_delay_s=0.5, worker_drain_timeout_s=30)
    await wait_for_status(task.task_id, "running", timeout_s=20)

    leaving.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(leaving.wait, 20) == 0

    assert (await fetch_task(task.task_id)).status == "completed"


async def test_a_stopped_worker_takes_no_new_work(session, redis_client, agent_id) -> None:
    async with running_worker() as worker:
        worker.request_stop()
        await asyncio.sleep(0.2)
        task = await lifecycle.submit(session, redis_client, agent_id=agent_id)
        await asyncio.sleep(1.5)
        assert (await fetch_task(task.task_id)).status == "pending"


async def test_a_task_finished_while_draining_still_sends_its_webhook(
    session, redis_client, agent_id, spawn_worker
) -> None:
    receiver = Receiver([])
    try:
        task = await lifecycle.submit(
            session, redis_client, agent_id=agent_id, webhook_url=receiver.url()
        )
        leaving = spawn_worker(worker_step_delay_s=0.5, worker_drain_timeout_s=30)
        await wait_for_status(task.task_id, "running", timeout_s=20)

        leaving.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(leaving.wait, 20) == 0

        assert [json.loads(request.body)["status"] for request in receiver.requests] == [
            "completed"
        ]
    finally:
        receiver.close()


async def test_a_task_stopped_before_its_first_step_frees_its_slot(
    session, redis_client, agent_id
) -> None:
    task = await lifecycle.submit(session, redis_client, agent_id=agent_id)
    worker = Worker(concurrency=1)
    claimed = await lifecycle.claim(session, task_id=task.task_id, worker_id=worker.worker_id)

    worker._spawn(claimed)
    worker._stop_task(task.task_id, "cancel")
    await asyncio.sleep(0.05)

    assert worker.running_task_ids == []


async def test_workers_end_a_task_whose_worker_overran_its_deadline(
    session, redis_client, agent_id, monkeypatch
) -> None:
    monkeypatch.setenv("AGENT_GROWTH_DEADLINE_GRACE_S", "0")
    monkeypatch.setenv("AGENT_GROWTH_RECONCILE_INTERVAL_S", "0.2")
    task = await lifecycle.submit(session, redis_client, agent_id=agent_id, timeout_seconds=1)
    await queue.pop(redis_client)
    # A worker that claimed it, keeps its lease alive, and never stops the work.
    await lifecycle.claim(session, task_id=task.task_id, worker_id="wedged")

    async with running_worker():
        done = await wait_for_status(task.task_id, "timeout", timeout_s=10)

    assert done.error == "exceeded its deadline of 1 s; its worker did not stop it"


async def test_a_step_that_swallows_its_cancellation_does_not_keep_the_worker_running(
    monkeypatch,
) -> None:
    # What a client library may do when the cancellation lands inside one of its awaits.
    async def stubborn_reconcile(self: Worker) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(1.0)

    monkeypatch.setattr(Worker, "_reconcile", stubborn_reconcile)
    # Nearly all of the reconciler's time is spent in the step, where the cancellation lands.
    monkeypatch.setenv("AGENT_GROWTH_RECONCILE_INTERVAL_S", "0.01")
    get_settings.cache_clear()
    worker = Worker(concurrency=1)
    runner = asyncio.create_task(worker.run())
    await asyncio.sleep(0.5)

    worker.request_stop()
    done, _ = await asyncio.wait([runner], timeout=10)

    assert runner in done, "the worker kept running after its stop"
    runner.result()
