"""Driving real workers inside a test's event loop, and waiting for what they write."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

from agent_growth.db import engine
from agent_growth.db.models import BackgroundTask
from agent_growth.settings import get_settings
from agent_growth.worker.runner import Worker

# The tasks of these tests end or are cancelled within seconds; a worker still running after
# this long is stuck.
STOP_TIMEOUT_S = 30


async def wait_until(
    predicate: Callable[[], Awaitable[bool] | bool], *, timeout_s: float = 30.0, what: str
) -> None:
    """Poll `predicate` (plain or async) until it holds; fail naming `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        outcome = predicate()
        if isinstance(outcome, Awaitable):
            outcome = await outcome
        if outcome:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


async def lose_redis_data(redis: aioredis.Redis) -> None:
    """What a Redis restart without persistence does to this installation: every key gone."""
    stale = [key async for key in redis.scan_iter(match=f"{get_settings().redis_prefix}:*")]
    if stale:
        await redis.delete(*stale)


async def fetch_task(task_id: str) -> BackgroundTask | None:
    async with engine.session_factory()() as session:
        return await session.get(BackgroundTask, task_id)


@asynccontextmanager
async def running_worker(*, concurrency: int = 2) -> AsyncIterator[Worker]:
    """A worker in this event loop until the block ends, then stopped and drained."""
    get_settings.cache_clear()
    worker = Worker(concurrency=concurrency)
    runner = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.request_stop()
        done, _ = await asyncio.wait([runner], timeout=STOP_TIMEOUT_S)
        if not done:
            # Where the worker is stuck says more than the timeout itself.
            for stuck in asyncio.all_tasks():
                if stuck is not asyncio.current_task():
                    stuck.print_stack(file=sys.stderr)
            runner.cancel()
            raise AssertionError(f"the worker did not stop within {STOP_TIMEOUT_S} s")
        runner.result()
