"""What a task event costs the database: the mirrors must not all read when one task changes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from agent_growth.db import engine
from agent_growth.operator.mirror import QUEUE_REFRESH_INTERVAL_S
from agent_growth.tasks import events, lifecycle, queue
from tests.operator.conftest import create, phase, refresh_body, resource, running_operator
from tests.running import wait_until

WAITING = 10
CLAIMS = 3


@contextmanager
def counting_task_reads() -> Iterator[list[str]]:
    """SELECTs on the task table sent while the block runs, in order."""
    seen: list[str] = []

    def record(conn, cursor, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "background_tasks" in statement:
            seen.append(statement)

    sync_engine = engine.engine().sync_engine
    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)


async def _claim_next(redis) -> str:
    """What a worker does when it takes the next task: pop, claim, announce."""
    task_id, _, _ = await queue.pop(redis)
    async with engine.session_factory()() as session:
        assert await lifecycle.claim(session, task_id=task_id, worker_id="test-worker")
    await events.publish(redis, events.TaskEvent(task_id, "running", 0))
    return task_id


def _positions(k8s, names: list[str]) -> list[int | None]:
    """The queue positions the resources show, smallest first (None sorts as 0)."""
    shown = [((resource(k8s, n) or {}).get("status") or {}).get("queuePosition") for n in names]
    return sorted(shown, key=lambda position: position or 0)


def _task_ids(k8s, names: list[str]) -> dict[str, str]:
    return {resource(k8s, name)["status"]["taskId"]: name for name in names}


async def test_a_claim_costs_a_few_reads_however_many_tasks_wait(
    k8s, kubeconfig_path, agent_id, monkeypatch, redis_client
):
    # Only signals make the mirrors read here: no polling, no periodic checks in between.
    for setting in ("POLL", "DRIFT", "BACKSTOP"):
        monkeypatch.setenv(f"AGENT_GROWTH_OPERATOR_{setting}_INTERVAL_S", "600")
    names = [f"waiting-{index}" for index in range(WAITING)]
    async with running_operator():
        for name in names:
            await create(k8s, refresh_body(name, agent_id))
        await wait_until(
            lambda: _positions(k8s, names) == list(range(1, WAITING + 1)),
            what="every resource showing its queue position",
        )
        await asyncio.sleep(QUEUE_REFRESH_INTERVAL_S + 0.5)  # nothing left in flight
        resources = _task_ids(k8s, names)

        # Claims a little apart, as workers make them: each one's reads are its own.
        claimed: list[str] = []
        with counting_task_reads() as reads:
            for _ in range(CLAIMS):
                claimed.append(resources[await _claim_next(redis_client)])
                left = [name for name in names if name not in claimed]
                await wait_until(
                    lambda: all(phase(k8s, name) == "Running" for name in claimed),
                    what="the claimed resources showing Running",
                )
                await wait_until(
                    lambda left=left: _positions(k8s, left) == list(range(1, len(left) + 1)),
                    what="the waiting resources moving up",
                )

    per_event = len(reads) / CLAIMS
    print(
        f"\n{CLAIMS} claims with {WAITING} resources waiting: {len(reads)} reads of the task "
        f"table, {per_event:.1f} per event"
    )
    # The changed task's own row, one batched read of the waiting ones, and at most the basis
    # of their ETAs: the same for 10 waiting resources as for 10,000.
    assert per_event <= 3, reads
