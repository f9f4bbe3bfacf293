"""What a client sees of a task: its row, its place in the queue, and when it should finish.

ETAs come from recent durations. A running task is projected from the pace its worker reports
(never earlier than now); one whose worker stopped heartbeating has no ETA until another worker
takes it back. A pending task waits for a slot: the workers' slots free up as their running
tasks end, then every task ahead of it takes a typical duration in one of them, and then it runs
for a typical duration itself. With no completed task yet there is no basis, and the ETA is null.
"""

from __future__ import annotations

import datetime as dt
import heapq
import logging
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth.db.models import BackgroundTask
from agent_growth.tasks import queue

logger = logging.getLogger(__name__)

# How many recent completions the typical duration is averaged over.
RECENT_COMPLETIONS = 50

# The typical duration changes slowly; one process re-reads it at most this often, so that a
# burst of status requests costs one aggregate query, not one each.
TYPICAL_DURATION_TTL_S = 5.0

_typical: tuple[float, float | None] = (float("-inf"), None)

# Queue ETAs simulate at most this many starts (a few milliseconds); positions further back are
# reckoned from the last simulated round, exact once every running task would have ended.
MAX_SIMULATED_STARTS = 20_000

# A typical run shorter than this (an empty scope) would make the simulation take forever.
MIN_TYPICAL_S = 0.001

PUBLIC_FIELDS = (
    "task_id",
    "agent_id",
    "task_type",
    "status",
    "priority",
    "timeout_seconds",
    "created_at",
    "started_at",
    "completed_at",
    "result",
    "error",
    "webhook_url",
    "webhook_retry_count",
    "cancellation_requested",
    "progress_percentage",
    "estimated_completion_at",
    "attempts",
)


async def recent_duration_s(session: AsyncSession) -> float | None:
    """Mean run time of the latest completed tasks, cached for `TYPICAL_DURATION_TTL_S`."""
    global _typical
    read_at, value = _typical
    if time.monotonic() - read_at < TYPICAL_DURATION_TTL_S:
        return value
    value = await _read_recent_duration_s(session)
    _typical = (time.monotonic(), value)
    return value


def forget_recent_duration() -> None:
    """Drop the cached typical duration (a new database, as in tests)."""
    global _typical
    _typical = (float("-inf"), None)


async def _read_recent_duration_s(session: AsyncSession) -> float | None:
    recent = (
        select((BackgroundTask.completed_at - BackgroundTask.started_at).label("took"))
        .where(BackgroundTask.status == "completed")
        .order_by(BackgroundTask.completed_at.desc())
        .limit(RECENT_COMPLETIONS)
        .subquery()
    )
    average = await session.scalar(select(func.avg(func.extract("epoch", recent.c.took))))
    return float(average) if average is not None else None


def task_fields(task: BackgroundTask) -> dict[str, Any]:
    return {name: getattr(task, name) for name in PUBLIC_FIELDS}


async def task_status(
    session: AsyncSession, redis: aioredis.Redis, *, task: BackgroundTask
) -> dict[str, Any]:
    """Every public field of the task, plus `queue_position` and a current ETA."""
    return (await task_statuses(session, redis, tasks=[task]))[task.task_id]


async def task_statuses(
    session: AsyncSession, redis: aioredis.Redis, *, tasks: Sequence[BackgroundTask]
) -> dict[str, dict[str, Any]]:
    """`task_status` of several tasks at once, by task id.

    However many tasks: one query for the database's clock, one (cached) for the typical
    duration, and for pending tasks one Redis round trip for the queue positions, one for the
    workers' capacity and one query for the running tasks that hold the workers' slots.
    """
    statuses = {task.task_id: {**task_fields(task), "queue_position": None} for task in tasks}
    pending = [task for task in tasks if task.status == "pending"]
    running = [task for task in tasks if task.status == "running"]
    if not pending and not running:
        return statuses

    typical_s = await recent_duration_s(session)
    # The database's clock: it wrote `started_at` and the leases, which ETAs are reckoned from.
    now = await session.scalar(select(func.clock_timestamp()))
    assert now is not None
    for task in running:
        statuses[task.task_id]["estimated_completion_at"] = _running_eta(
            started_at=task.started_at,
            projected=task.estimated_completion_at,
            lease_expires_at=task.lease_expires_at,
            now=now,
            typical_s=typical_s,
        )
    if not pending:
        return statuses

    try:
        positions = await queue.positions(redis, [(t.task_id, t.priority) for t in pending])
        capacity = await queue.worker_capacity(redis)
    except (RedisError, OSError) as exc:
        if len(pending) == 1:
            logger.warning("queue position of task %s unknown: %s", pending[0].task_id, exc)
        else:
            logger.warning("queue positions of %d tasks unknown: %s", len(pending), exc)
        positions, capacity = {}, 0
    for task in pending:
        statuses[task.task_id]["queue_position"] = positions.get(task.task_id)
    # With no worker alive there is no telling when anything will run.
    if typical_s is None or capacity == 0:
        return statuses

    free_in_s = await _slots_free_in_s(session, now=now, typical_s=typical_s, capacity=capacity)
    starts_in_s = start_times_s(free_in_s, typical_s=typical_s, positions=positions.values())
    for task in pending:
        position = positions.get(task.task_id)
        if position is not None:
            eta = now + dt.timedelta(seconds=starts_in_s[position] + typical_s)
            statuses[task.task_id]["estimated_completion_at"] = eta
    return statuses


def start_times_s(
    free_in_s: Sequence[float], *, typical_s: float, positions: Iterable[int]
) -> dict[int, float]:
    """When the tasks at `positions` in the queue start, in seconds from now.

    Slot i is free after free_in_s[i] seconds, and again a typical run after each start; the
    n-th start is the n-th earliest of all those moments, found by merging the slots in a heap.
    Once every slot is past the end of the task it runs now, each round of starts repeats the
    one before it a typical run later, so positions further back are reckoned, not simulated.
    """
    wanted = sorted(set(positions))
    if not wanted or not free_in_s:
        return {}
    capacity = len(free_in_s)
    typical_s = max(typical_s, MIN_TYPICAL_S)
    settled_after = capacity * (math.ceil(max(free_in_s) / typical_s) + 1)
    simulated = min(wanted[-1], settled_after, MAX_SIMULATED_STARTS)

    slots = list(free_in_s)
    heapq.heapify(slots)
    starts = []
    for _ in range(simulated):
        start = heapq.heappop(slots)
        starts.append(start)
        heapq.heappush(slots, start + typical_s)

    result = {}
    for position in wanted:
        rounds = max(0, math.ceil((position - simulated) / capacity))
        result[position] = starts[position - 1 - rounds * capacity] + rounds * typical_s
    return result


def _running_eta(
    *,
    started_at: dt.datetime | None,
    projected: dt.datetime | None,
    lease_expires_at: dt.datetime | None,
    now: dt.datetime,
    typical_s: float | None,
) -> dt.datetime | None:
    """When a running task should end: its worker's projection, else a typical run."""
    if lease_expires_at is not None and lease_expires_at < now:
        return None  # its worker is gone; it runs again once another worker takes it back
    if projected is None and started_at is not None and typical_s is not None:
        projected = started_at + dt.timedelta(seconds=typical_s)
    return None if projected is None else max(projected, now)


async def _slots_free_in_s(
    session: AsyncSession, *, now: dt.datetime, typical_s: float, capacity: int
) -> list[float]:
    """Seconds until each of the workers' `capacity` slots is free, soonest first."""
    statement = select(
        BackgroundTask.started_at,
        BackgroundTask.estimated_completion_at,
        BackgroundTask.lease_expires_at,
    ).where(BackgroundTask.status == "running", BackgroundTask.lease_expires_at >= now)
    busy = []
    for started_at, projected, lease_expires_at in (await session.execute(statement)).all():
        eta = _running_eta(
            started_at=started_at,
            projected=projected,
            lease_expires_at=lease_expires_at,
            now=now,
            typical_s=typical_s,
        )
        busy.append(((eta or now) - now).total_seconds())
    # More running tasks than announced slots: a worker's announcement is late; count the
    # soonest to finish.
    busy = sorted(busy)[:capacity]
    return [0.0] * (capacity - len(busy)) + busy
