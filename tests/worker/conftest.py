"""Helpers for driving real workers as `agent-growth worker` processes, and their tasks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from agent_growth.db.models import BackgroundTask
from tests import running


async def fetch_task(task_id: str) -> BackgroundTask:
    task = await running.fetch_task(task_id)
    assert task is not None, f"task {task_id} vanished"
    return task


async def wait_for_status(task_id: str, *statuses: str, timeout_s: float = 15.0) -> BackgroundTask:
    async def reached() -> bool:
        return (await fetch_task(task_id)).status in statuses

    await running.wait_until(reached, timeout_s=timeout_s, what=f"{task_id} to become {statuses}")
    return await fetch_task(task_id)


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
