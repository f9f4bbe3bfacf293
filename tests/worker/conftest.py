"""Helpers for driving real workers: in this process, or as `agent-growth worker` processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import pytest

from agent_growth.db import engine
from agent_growth.db.models import BackgroundTask
from agent_growth.settings import get_settings
from agent_growth.worker.runner import Worker


async def fetch_task(task_id: str) -> BackgroundTask:
    async with engine.session_factory()() as session:
        task = await session.get(BackgroundTask, task_id)
        assert task is not None, f"task {task_id} vanished"
        return task


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], *, timeout_s: float = 15.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


async def wait_for_status(task_id: str, *statuses: str, timeout_s: float = 15.0) -> BackgroundTask:
    async def reached() -> bool:
        return (await fetch_task(task_id)).status in statuses

    await wait_until(reached, timeout_s=timeout_s, what=f"{task_id} to become {statuses}")
    return await fetch_task(task_id)


@asynccontextmanager
async def running_worker(*, concurrency: int = 2) -> AsyncIterator[Worker]:
    get_settings.cache_clear()
    worker = Worker(concurrency=concurrency)
    runner = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.request_stop()
        await asyncio.wait_for(runner, timeout=30)


@pytest.fixture
def spawn_worker() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `agent-growth worker` processes with extra settings; all are killed afterwards."""
    processes: list[subprocess.Popen[bytes]] = []

    def spawn(**settings: object) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.update({f"AGENT_GROWTH_{k.upper()}": str(v) for k, v in settings.items()})
        process = subprocess.Popen(
            [sys.executable, "-m", "agent_growth", "worker", "--concurrency", "1"],
            env=env,
        )
        processes.append(process)
        return process

    yield spawn
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
