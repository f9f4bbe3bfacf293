"""ETAs a client reads: waiting for a free slot, then a typical run; never in the past."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import redis.asyncio as aioredis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth.db.models import BackgroundTask
from agent_growth.tasks import lifecycle, queue, status
from tests import factories

TYPICAL_S = 4.0


@pytest.fixture
async def agent_id(session: AsyncSession) -> uuid.UUID:
    return await factories.small_corpus_agent(session)


async def _set(session: AsyncSession, task_id: str, **values: object) -> None:
    await session.execute(
        update(BackgroundTask).where(BackgroundTask.task_id == task_id).values(**values)
    )
    await session.commit()


async def _submit(session: AsyncSession, redis: aioredis.Redis, agent_id: uuid.UUID) -> str:
    return (await lifecycle.submit(session, redis, agent_id=agent_id)).task_id


async def _completed_before(
    session: AsyncSession, redis: aioredis.Redis, agent_id: uuid.UUID
) -> None:
    """One finished task that took TYPICAL_S, the basis of every ETA."""
    task_id = await _submit(session, redis, agent_id)
    await queue.remove(redis, task_id)
    ended = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    started = ended - dt.timedelta(seconds=TYPICAL_S)
    await _set(session, task_id, status="completed", started_at=started, completed_at=ended)


async def _run(
    session: AsyncSession, redis: aioredis.Redis, agent_id: uuid.UUID, *, ends_in_s: float
) -> str:
    """A task a worker has taken and projects to end in `ends_in_s`."""
    task_id = await _submit(session, redis, agent_id)
    await queue.remove(redis, task_id)
    assert await lifecycle.claim(session, task_id=task_id, worker_id="w1") is not None
    eta = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ends_in_s)
    await _set(session, task_id, estimated_completion_at=eta)
    return task_id


async def _eta_in_s(session: AsyncSession, redis: aioredis.Redis, task_id: str) -> float | None:
    session.expire_all()
    task = await session.get(BackgroundTask, task_id)
    assert task is not None
    eta = (await status.task_status(session, redis, task=task))["estimated_completion_at"]
    return None if eta is None else (eta - dt.datetime.now(dt.UTC)).total_seconds()


async def test_waiting_tasks_wait_for_the_busy_slot_then_for_each_other(
    session, redis_client, agent_id
) -> None:
    await _completed_before(session, redis_client, agent_id)
    await queue.announce_worker(redis_client, worker_id="w1", slots=1)
    await _run(session, redis_client, agent_id, ends_in_s=3.0)
    first = await _submit(session, redis_client, agent_id)
    second = await _submit(session, redis_client, agent_id)

    first_eta = await _eta_in_s(session, redis_client, first)
    second_eta = await _eta_in_s(session, redis_client, second)

    assert first_eta == pytest.approx(3.0 + TYPICAL_S, abs=1.0)
    assert second_eta == pytest.approx(3.0 + 2 * TYPICAL_S, abs=1.0)


async def test_an_idle_slot_takes_the_next_task_at_once(session, redis_client, agent_id) -> None:
    await _completed_before(session, redis_client, agent_id)
    await queue.announce_worker(redis_client, worker_id="w1", slots=2)
    await _run(session, redis_client, agent_id, ends_in_s=3.0)
    first = await _submit(session, redis_client, agent_id)
    second = await _submit(session, redis_client, agent_id)

    assert await _eta_in_s(session, redis_client, first) == pytest.approx(TYPICAL_S, abs=1.0)
    assert await _eta_in_s(session, redis_client, second) == pytest.approx(3.0 + TYPICAL_S, abs=1.0)


async def test_a_running_task_behind_its_projection_is_expected_now_not_in_the_past(
    session, redis_client, agent_id
) -> None:
    await _completed_before(session, redis_client, agent_id)
    late = await _run(session, redis_client, agent_id, ends_in_s=-5.0)

    assert await _eta_in_s(session, redis_client, late) == pytest.approx(0.0, abs=1.0)


async def test_a_running_task_whose_worker_stopped_heartbeating_has_no_eta(
    session, redis_client, agent_id
) -> None:
    await _completed_before(session, redis_client, agent_id)
    orphan = await _run(session, redis_client, agent_id, ends_in_s=3.0)
    await _set(session, orphan, lease_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))

    assert await _eta_in_s(session, redis_client, orphan) is None


async def test_without_workers_or_a_finished_task_there_is_no_eta(
    session, redis_client, agent_id
) -> None:
    waiting = await _submit(session, redis_client, agent_id)
    assert await _eta_in_s(session, redis_client, waiting) is None  # nothing finished yet

    await _completed_before(session, redis_client, agent_id)
    status.forget_recent_duration()
    assert await _eta_in_s(session, redis_client, waiting) is None  # no worker alive

    await queue.announce_worker(redis_client, worker_id="w1", slots=1)
    assert await _eta_in_s(session, redis_client, waiting) == pytest.approx(TYPICAL_S, abs=1.0)


def test_a_slot_busy_for_long_takes_its_turn_only_once_it_is_free() -> None:
    # Two slots free in a second, one busy for 17 s; a typical run takes 4 s.
    starts = status.start_times_s([1.0, 1.0, 17.0], typical_s=4.0, positions=range(1, 13))

    assert [starts[n] for n in range(1, 13)] == [1, 1, 5, 5, 9, 9, 13, 13, 17, 17, 17, 21]


@pytest.mark.parametrize(
    "free_in_s", [[0.0], [0.0, 0.0, 2.5], [3.0, 0.2, 11.0, 7.5], [40.0, 0.0], [0.5] * 6]
)
def test_start_times_far_back_match_every_start_laid_out_in_order(free_in_s: list[float]) -> None:
    # Past the first few rounds, positions are reckoned from the last simulated round.
    typical_s, count = 2.0, 300
    every = sorted(free + round_ * typical_s for free in free_in_s for round_ in range(count))

    starts = status.start_times_s(free_in_s, typical_s=typical_s, positions=range(1, count))

    assert [starts[n] for n in range(1, count)] == pytest.approx(every[: count - 1])
