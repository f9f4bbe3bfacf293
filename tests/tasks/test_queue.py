"""The Redis queue: strict priority, FIFO within a priority, exact positions, idempotent pushes."""

from __future__ import annotations

import datetime as dt

import redis.asyncio as aioredis

from agent_growth.tasks import queue

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


async def test_pops_follow_priority_then_arrival(redis_client: aioredis.Redis) -> None:
    await queue.push(redis_client, task_id="low-1", priority="low", created_at=at(0))
    await queue.push(redis_client, task_id="medium-1", priority="medium", created_at=at(1))
    await queue.push(redis_client, task_id="low-2", priority="low", created_at=at(2))
    await queue.push(redis_client, task_id="high-1", priority="high", created_at=at(3))
    await queue.push(redis_client, task_id="medium-2", priority="medium", created_at=at(4))

    order = []
    while (popped := await queue.pop(redis_client)) is not None:
        order.append(popped[0])

    assert order == ["high-1", "medium-1", "medium-2", "low-1", "low-2"]


async def test_positions_count_every_task_ahead(redis_client: aioredis.Redis) -> None:
    await queue.push(redis_client, task_id="low-1", priority="low", created_at=at(0))
    await queue.push(redis_client, task_id="medium-1", priority="medium", created_at=at(1))
    await queue.push(redis_client, task_id="high-1", priority="high", created_at=at(2))
    await queue.push(redis_client, task_id="medium-2", priority="medium", created_at=at(3))

    positions = {
        task_id: await queue.position(redis_client, task_id=task_id, priority=priority)
        for task_id, priority in [
            ("high-1", "high"),
            ("medium-1", "medium"),
            ("medium-2", "medium"),
            ("low-1", "low"),
        ]
    }
    assert positions == {"high-1": 1, "medium-1": 2, "medium-2": 3, "low-1": 4}

    await queue.pop(redis_client)
    assert await queue.position(redis_client, task_id="low-1", priority="low") == 3
    assert await queue.position(redis_client, task_id="high-1", priority="high") is None


async def test_pushing_a_queued_task_again_keeps_its_place(redis_client: aioredis.Redis) -> None:
    await queue.push(redis_client, task_id="first", priority="medium", created_at=at(0))
    await queue.push(redis_client, task_id="second", priority="medium", created_at=at(1))
    await queue.push(redis_client, task_id="first", priority="medium", created_at=at(5))

    assert await queue.position(redis_client, task_id="first", priority="medium") == 1
    assert await queue.depth(redis_client) == {"high": 0, "medium": 2, "low": 0}


async def test_removed_task_is_never_popped(redis_client: aioredis.Redis) -> None:
    await queue.push(redis_client, task_id="gone", priority="high", created_at=at(0))
    await queue.push(redis_client, task_id="kept", priority="low", created_at=at(1))

    assert await queue.remove(redis_client, "gone") is True
    assert await queue.remove(redis_client, "gone") is False
    assert (await queue.pop(redis_client))[0] == "kept"
    assert await queue.pop(redis_client) is None


async def test_capacity_counts_only_recently_seen_workers(redis_client: aioredis.Redis) -> None:
    await queue.announce_worker(redis_client, worker_id="w1", slots=2)
    await queue.announce_worker(redis_client, worker_id="w2", slots=3)
    await redis_client.zadd(queue.workers_key(), {"w-gone|4": 1.0})

    assert await queue.worker_capacity(redis_client) == 5
