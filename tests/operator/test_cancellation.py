"""Cancelling by `spec.cancel`, by deleting the resource, and by the REST door; deadlines; TTL."""

from __future__ import annotations

import asyncio

from agent_growth import kube
from agent_growth.operator import handlers
from agent_growth.tasks import events, lifecycle, queue
from tests.operator.conftest import (
    create,
    delete,
    events_for,
    patch_spec,
    phase,
    reconcile_errors,
    refresh_body,
    resource,
    running_operator,
)
from tests.running import fetch_task, running_worker, wait_until


async def _task_id_of(k8s, name: str) -> str:
    await wait_until(lambda: phase(k8s, name) is not None, what=f"{name} to get a status")
    return resource(k8s, name)["status"]["taskId"]


async def _row_status(task_id: str) -> str | None:
    row = await fetch_task(task_id)
    return None if row is None else row.status


async def test_setting_cancel_on_a_waiting_refresh_cancels_it(
    k8s, kubeconfig_path, agent_id, redis_client
):
    async with running_operator():
        await create(k8s, refresh_body("waiting", agent_id))
        task_id = await _task_id_of(k8s, "waiting")
        await patch_spec(k8s, "waiting", {"cancel": True})
        await wait_until(lambda: phase(k8s, "waiting") == "Cancelled", what="Cancelled")

    assert await _row_status(task_id) == "cancelled"
    assert await queue.position(redis_client, task_id=task_id, priority="medium") is None
    assert events_for(k8s, "waiting") == ["Queued", "Cancelled"]
    status = resource(k8s, "waiting")["status"]
    assert status["observedGeneration"] == resource(k8s, "waiting")["metadata"]["generation"] == 2


async def test_setting_cancel_on_a_running_refresh_stops_its_worker(
    k8s, kubeconfig_path, agent_id, monkeypatch
):
    monkeypatch.setenv("AGENT_GROWTH_WORKER_STEP_DELAY_S", "1.0")
    async with running_operator(), running_worker():
        await create(k8s, refresh_body("busy", agent_id))
        task_id = await _task_id_of(k8s, "busy")
        await wait_until(lambda: phase(k8s, "busy") == "Running", what="Running")
        await patch_spec(k8s, "busy", {"cancel": True})
        await wait_until(lambda: phase(k8s, "busy") == "Cancelled", what="Cancelled")

    assert await _row_status(task_id) == "cancelled"
    assert events_for(k8s, "busy") == ["Queued", "Started", "Cancelled"]


async def test_a_refresh_created_cancelled_is_never_queued(
    k8s, kubeconfig_path, agent_id, redis_client
):
    async with running_operator():
        await create(k8s, refresh_body("stillborn", agent_id, cancel=True))
        await wait_until(lambda: phase(k8s, "stillborn") == "Cancelled", what="Cancelled")

    task_id = resource(k8s, "stillborn")["status"]["taskId"]
    assert await _row_status(task_id) == "cancelled"
    assert sum((await queue.depth(redis_client)).values()) == 0


async def test_a_refresh_created_cancelled_is_cancelled_even_while_its_cancel_handler_fails(
    k8s, kubeconfig_path, agent_id, redis_client, monkeypatch
):
    """Accepting it cancels the row itself: no pending row is left for a worker to queue."""

    async def failing(**_: object) -> None:
        raise RuntimeError("the cancel handler failed")

    monkeypatch.setattr(handlers, "cancel_requested", failing)
    async with running_operator():
        await create(k8s, refresh_body("stillborn", agent_id, cancel=True))
        await wait_until(lambda: phase(k8s, "stillborn") == "Cancelled", what="Cancelled")

    task_id = resource(k8s, "stillborn")["status"]["taskId"]
    assert await _row_status(task_id) == "cancelled"
    assert sum((await queue.depth(redis_client)).values()) == 0


async def test_deleting_a_running_refresh_cancels_its_task_before_it_goes(
    k8s, kubeconfig_path, agent_id, monkeypatch
):
    monkeypatch.setenv("AGENT_GROWTH_WORKER_STEP_DELAY_S", "1.0")
    async with running_operator(), running_worker():
        await create(k8s, refresh_body("doomed", agent_id))
        task_id = await _task_id_of(k8s, "doomed")
        await wait_until(lambda: phase(k8s, "doomed") == "Running", what="Running")
        assert kube.GROUP + "/finalizer" in resource(k8s, "doomed")["metadata"]["finalizers"]

        await delete(k8s, "doomed")
        assert resource(k8s, "doomed")["metadata"]["deletionTimestamp"]
        await wait_until(lambda: resource(k8s, "doomed") is None, what="the resource to go")

    assert await _row_status(task_id) == "cancelled"


async def test_deleting_a_waiting_refresh_cancels_its_task_and_lets_it_go(
    k8s, kubeconfig_path, agent_id, redis_client
):
    async with running_operator():
        await create(k8s, refresh_body("unwanted", agent_id))
        task_id = await _task_id_of(k8s, "unwanted")
        await delete(k8s, "unwanted")
        await wait_until(lambda: resource(k8s, "unwanted") is None, what="the resource to go")

    assert await _row_status(task_id) == "cancelled"
    assert await queue.position(redis_client, task_id=task_id, priority="medium") is None


async def test_a_running_task_past_its_deadline_ends_timed_out_and_its_worker_is_told(
    k8s, kubeconfig_path, agent_id, monkeypatch, session, redis_client
):
    monkeypatch.setenv("AGENT_GROWTH_DEADLINE_GRACE_S", "0.5")
    told: list[str] = []
    subscribed = asyncio.Event()

    async def listen() -> None:
        async for task_id in events.cancellations(redis_client, on_subscribed=subscribed.set):
            told.append(task_id)

    listener = asyncio.create_task(listen())
    await asyncio.wait_for(subscribed.wait(), timeout=5)
    async with running_operator():
        await create(k8s, refresh_body("stuck", agent_id, activeDeadlineSeconds=1))
        task_id = await _task_id_of(k8s, "stuck")

        # A worker takes the task and hangs: it never reports, never finishes.
        assert await lifecycle.claim(session, task_id=task_id, worker_id="hung-worker")
        await wait_until(lambda: phase(k8s, "stuck") == "TimedOut", what="TimedOut")
        await wait_until(lambda: task_id in told, timeout_s=5, what="the stop signal")
    listener.cancel()

    assert await _row_status(task_id) == "timeout"
    assert events_for(k8s, "stuck")[-1] == "TimedOut"


async def test_deleting_a_refresh_whose_worker_does_not_stop_lets_it_go_after_the_wait(
    k8s, kubeconfig_path, agent_id, session
):
    async with running_operator():
        await create(k8s, refresh_body("stubborn", agent_id))
        task_id = await _task_id_of(k8s, "stubborn")
        # A worker takes the task and never looks at its cancellation.
        assert await lifecycle.claim(session, task_id=task_id, worker_id="deaf-worker")
        await wait_until(lambda: phase(k8s, "stubborn") == "Running", what="Running")

        await delete(k8s, "stubborn")
        # The finalizer waits AGENT_GROWTH_OPERATOR_CANCEL_WAIT_S (3 s here), then lets go.
        await asyncio.sleep(1.0)
        assert resource(k8s, "stubborn") is not None, "let go without waiting for the worker"
        await wait_until(lambda: resource(k8s, "stubborn") is None, what="the resource to go")

    row = await fetch_task(task_id)
    assert row is not None and row.cancellation_requested
    assert row.status == "running"  # until the worker stops, or its lease runs out


async def test_a_finished_refresh_is_deleted_after_its_ttl_and_its_row_stays(
    k8s, kubeconfig_path, agent_id
):
    async with running_operator(), running_worker():
        # A TTL long enough that the final phase can be seen before the resource goes, even
        # on a loaded machine.
        await create(k8s, refresh_body("short-lived", agent_id, ttlSecondsAfterFinished=3))
        task_id = await _task_id_of(k8s, "short-lived")
        await wait_until(lambda: phase(k8s, "short-lived") == "Completed", what="Completed")
        await wait_until(lambda: resource(k8s, "short-lived") is None, what="TTL deletion")

    assert await _row_status(task_id) == "completed"


async def test_a_refresh_that_cannot_be_deleted_counts_as_a_reconcile_error(
    k8s, kubeconfig_path, agent_id
):
    k8s.forbidden.add(("DELETE", kube.PLURAL))
    before = reconcile_errors()
    async with running_operator():
        await create(
            k8s, refresh_body("undeletable", agent_id, cancel=True, ttlSecondsAfterFinished=0)
        )
        await wait_until(lambda: phase(k8s, "undeletable") == "Cancelled", what="Cancelled")
        await wait_until(lambda: reconcile_errors() > before, what="a reconcile error")

    assert resource(k8s, "undeletable") is not None
