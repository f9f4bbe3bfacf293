"""Operators that stop and start again, operators that run twice, and rows that drift."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import func, update

from agent_growth import kube
from agent_growth.db.models import BackgroundTask
from agent_growth.operator import drift
from agent_growth.operator.runtime import Runtime
from agent_growth.tasks import lifecycle, queue
from tests.operator.conftest import (
    NAMESPACE,
    RESOURCE,
    create,
    events_for,
    phase,
    refresh_body,
    resource,
    running_operator,
)
from tests.running import fetch_task, running_worker, wait_until


async def _queued(redis, task_id: str) -> list[tuple[str, float | None]]:
    """Where the task sits in Redis: (priority, score) for each queue that holds it."""
    found = []
    for priority in ("high", "medium", "low"):
        score = await redis.zscore(queue.queue_key(priority), task_id)
        if score is not None:
            found.append((priority, score))
    return found


async def test_a_restarted_operator_does_not_queue_a_waiting_refresh_twice(
    k8s, kubeconfig_path, agent_id, redis_client
):
    async with running_operator():
        await create(k8s, refresh_body("patient", agent_id))
        await wait_until(lambda: phase(k8s, "patient") == "Pending", what="Pending")
    task_id = resource(k8s, "patient")["status"]["taskId"]
    before = await _queued(redis_client, task_id)

    async with running_operator():
        await asyncio.sleep(1.0)  # the resume handler has run by now
        assert await _queued(redis_client, task_id) == before
        async with running_worker():
            await wait_until(lambda: phase(k8s, "patient") == "Completed", what="Completed")

    assert len(before) == 1
    assert events_for(k8s, "patient") == ["Queued", "Started", "Completed"]
    row = await fetch_task(task_id)
    assert (row.status, row.attempts) == ("completed", 1)


async def test_of_two_replicas_only_the_higher_priority_one_acts_until_it_leaves(
    k8s, kubeconfig_path, agent_id
):
    async with running_operator(standalone=False, priority=100, identity="low") as low:
        async with running_operator(standalone=False, priority=200, identity="high") as high:
            await wait_until(
                lambda: (
                    {"low", "high"}
                    <= set(
                        (k8s.read("kopf.dev/v1/kopfpeerings", NAMESPACE, "agent-growth") or {}).get(
                            "status", {}
                        )
                    )
                ),
                what="both replicas in the peering status",
            )
            await create(k8s, refresh_body("contested", agent_id))
            await wait_until(lambda: phase(k8s, "contested") == "Pending", what="Pending")
            await asyncio.sleep(1.0)
            assert (NAMESPACE, "contested") in high.mirrored
            assert low.mirrored == set()

        # The leader said goodbye in the peering status; the other replica takes over.
        await create(k8s, refresh_body("after-failover", agent_id))
        await wait_until(lambda: phase(k8s, "after-failover") == "Pending", what="failover")
        assert (NAMESPACE, "after-failover") in low.mirrored

    assert events_for(k8s, "contested") == ["Queued"]


async def test_a_task_whose_resource_vanished_while_the_operator_was_down_is_cancelled(
    k8s, kubeconfig_path, agent_id, monkeypatch
):
    monkeypatch.setenv("AGENT_GROWTH_OPERATOR_DRIFT_MIN_AGE_S", "0")
    async with running_operator():
        await create(k8s, refresh_body("forgotten", agent_id))
        await wait_until(lambda: phase(k8s, "forgotten") == "Pending", what="Pending")
    task_id = resource(k8s, "forgotten")["status"]["taskId"]

    # While no operator runs, someone strips the finalizer and deletes the resource.
    k8s.objects[RESOURCE, NAMESPACE, "forgotten"].delete()

    async with running_operator():
        await wait_until(
            lambda: _status_is(task_id, "cancelled"), what="the orphaned task to be cancelled"
        )


async def test_a_row_whose_resource_never_arrived_is_cancelled(
    k8s, kubeconfig_path, agent_id, session, monkeypatch
):
    monkeypatch.setenv("AGENT_GROWTH_OPERATOR_DRIFT_MIN_AGE_S", "0")
    orphan = await lifecycle.create_task(session, agent_id=agent_id, resource_namespace=NAMESPACE)
    local = await lifecycle.create_task(session, agent_id=agent_id)
    elsewhere = await lifecycle.create_task(session, agent_id=agent_id, resource_namespace="team-b")

    async with running_operator():
        await wait_until(lambda: _status_is(orphan.task_id, "cancelled"), what="cancelled")
        await asyncio.sleep(1.2)  # one more drift round

    assert (await fetch_task(local.task_id)).status == "pending"
    assert (await fetch_task(elsewhere.task_id)).status == "pending"


async def _status_is(task_id: str, status: str) -> bool:
    row = await fetch_task(task_id)
    return row is not None and row.status == status


async def test_drift_reads_every_page_of_resources_and_spares_their_tasks(
    k8s, kubeconfig_path, agent_id, session, monkeypatch
):
    monkeypatch.setenv("AGENT_GROWTH_OPERATOR_DRIFT_MIN_AGE_S", "0")
    monkeypatch.setattr(drift, "LIST_PAGE_SIZE", 2)
    async with running_operator():
        for index in range(5):
            await create(k8s, refresh_body(f"paged-{index}", agent_id))
        await wait_until(
            lambda: all(phase(k8s, f"paged-{index}") == "Pending" for index in range(5)),
            what="five Pending resources",
        )
        orphan = await lifecycle.create_task(
            session, agent_id=agent_id, resource_namespace=NAMESPACE
        )
        await wait_until(lambda: _status_is(orphan.task_id, "cancelled"), what="cancelled")
        await asyncio.sleep(1.2)  # one more drift round

    for index in range(5):
        assert phase(k8s, f"paged-{index}") == "Pending"
        assert await _status_is(resource(k8s, f"paged-{index}")["status"]["taskId"], "pending")
    pages = [r for r in k8s.lists(kube.PLURAL) if r.params.get("limit") == "2"]
    assert any(r.params.get("continue") for r in pages), "drift never asked for a second page"


async def test_drift_leaves_rows_younger_than_the_minimum_age_by_the_database_clock(
    k8s, kubeconfig_path, agent_id, session, monkeypatch
):
    monkeypatch.setenv("AGENT_GROWTH_OPERATOR_DRIFT_MIN_AGE_S", "60")
    orphan = await lifecycle.create_task(session, agent_id=agent_id, resource_namespace=NAMESPACE)
    runtime = await Runtime.start(namespaces=(NAMESPACE,))
    try:
        assert await drift.reconcile_drift(runtime) == []
        await session.execute(
            update(BackgroundTask)
            .where(BackgroundTask.task_id == orphan.task_id)
            .values(created_at=func.now() - dt.timedelta(seconds=61))
        )
        await session.commit()
        assert await drift.reconcile_drift(runtime) == [orphan.task_id]
    finally:
        await runtime.close()

    assert await _status_is(orphan.task_id, "cancelled")
