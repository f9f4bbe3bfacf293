"""A CoverageRefresh from creation to its end, with the real operator and a real worker."""

from __future__ import annotations

import asyncio
import logging
import uuid

from sqlalchemy import delete as sa_delete
from sqlalchemy import select

from agent_growth import kube, logs
from agent_growth.db import engine
from agent_growth.db.models import Agent, BackgroundTask, CoverageHistory
from agent_growth.operator import mirror
from agent_growth.tasks import events, lifecycle
from tests.operator.conftest import (
    NAMESPACE,
    create,
    events_for,
    patch_spec,
    phase,
    refresh_body,
    resource,
    running_operator,
)
from tests.running import fetch_task, running_worker, wait_until


async def test_a_resource_applied_under_any_name_runs_to_completed(k8s, kubeconfig_path, agent_id):
    async with running_operator(), running_worker():
        created = await create(k8s, refresh_body("nightly-refresh", agent_id))
        task_id = f"agent-coverage-{created['metadata']['uid']}"

        await wait_until(lambda: phase(k8s, "nightly-refresh") == "Completed", what="Completed")

    obj = resource(k8s, "nightly-refresh")
    assert obj is not None
    row = await fetch_task(task_id)
    assert row is not None
    assert row.status == "completed"
    assert row.resource_namespace == NAMESPACE
    assert obj["status"]["taskId"] == task_id
    assert obj["metadata"]["labels"][kube.TASK_ID_LABEL] == task_id
    assert obj["status"]["progress"] == 100
    assert obj["status"]["result"]["overallCoverage"] == row.result["overall_coverage"]
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert events_for(k8s, "nightly-refresh") == ["Queued", "Started", "Completed"]
    async with engine.session_factory()() as session:
        history = await session.scalar(
            select(CoverageHistory).where(CoverageHistory.task_id == task_id)
        )
    assert history is not None
    assert history.agent_id == agent_id


class _Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.addFilter(logs.TaskIdFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_records_the_core_makes_for_a_resource_name_it_and_its_task(
    k8s, kubeconfig_path, agent_id, caplog
):
    caplog.set_level(logging.INFO, logger="agent_growth")
    collected = _Collected()
    logging.getLogger("agent_growth").addHandler(collected)
    try:
        async with running_operator():
            created = await create(k8s, refresh_body("traced", agent_id))
            await wait_until(lambda: phase(k8s, "traced") == "Pending", what="Pending")
    finally:
        logging.getLogger("agent_growth").removeHandler(collected)

    task_id = f"agent-coverage-{created['metadata']['uid']}"
    from_core = [r for r in collected.records if r.name == "agent_growth.tasks.lifecycle"]
    assert from_core, "the core logged nothing about the new task"
    assert {(r.resource, r.task_id) for r in from_core} == {(f"{NAMESPACE}/traced", task_id)}


async def test_a_resource_created_by_the_api_runs_the_task_the_api_recorded(
    k8s, kubeconfig_path, agent_id, session
):
    task = await lifecycle.create_task(session, agent_id=agent_id, resource_namespace=NAMESPACE)
    async with running_operator(), running_worker():
        await kube.create_coverage_refresh(
            name=task.task_id,
            namespace=NAMESPACE,
            agent_id=str(agent_id),
            priority="high",
            active_deadline_s=120,
            webhook_url=None,
        )
        await wait_until(lambda: phase(k8s, task.task_id) == "Completed", what="Completed")

    obj = resource(k8s, task.task_id)
    assert obj["status"]["taskId"] == task.task_id
    async with engine.session_factory()() as fresh:
        rows = (await fresh.scalars(select(BackgroundTask))).all()
    assert [row.task_id for row in rows] == [task.task_id]
    assert rows[0].status == "completed"


async def test_an_unknown_agent_fails_the_resource_once_without_retrying(k8s, kubeconfig_path):
    unknown = uuid.uuid4()
    async with running_operator():
        await create(k8s, refresh_body("orphan", unknown))
        await wait_until(lambda: phase(k8s, "orphan") == "Failed", what="Failed")
        await asyncio.sleep(1.5)  # time enough for retries, if there were any

    status = resource(k8s, "orphan")["status"]
    assert str(unknown) in status["message"]
    accepted = next(c for c in status["conditions"] if c["type"] == "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "AgentNotFound")
    assert events_for(k8s, "orphan") == ["Failed"]
    status_writes = [r for r in k8s.writes(name="orphan") if r.subresource == "status"]
    assert len(status_writes) == 1
    async with engine.session_factory()() as fresh:
        assert (await fresh.scalars(select(BackgroundTask))).all() == []


async def test_a_refresh_whose_agent_is_deleted_ends_failed_and_goes_after_its_ttl(
    k8s, kubeconfig_path, agent_id, session
):
    async with running_operator():
        # A TTL long enough that the final phase can be seen before the resource goes, even
        # on a loaded machine.
        await create(k8s, refresh_body("bereaved", agent_id, ttlSecondsAfterFinished=3))
        await wait_until(lambda: phase(k8s, "bereaved") == "Pending", what="Pending")
        task_id = resource(k8s, "bereaved")["status"]["taskId"]

        # Deleting the agent deletes its task rows with it.
        await session.execute(sa_delete(Agent).where(Agent.id == agent_id))
        await session.commit()
        assert await fetch_task(task_id) is None

        await wait_until(lambda: phase(k8s, "bereaved") == "Failed", what="Failed")
        status = resource(k8s, "bereaved")["status"]
        await wait_until(lambda: resource(k8s, "bereaved") is None, what="TTL deletion")

    assert status["message"] == "task row deleted (its agent was deleted)"
    assert status["taskId"] == task_id
    assert "queuePosition" not in status
    finished = next(c for c in status["conditions"] if c["type"] == "Finished")
    assert (finished["status"], finished["reason"]) == ("True", "TaskDeleted")
    assert events_for(k8s, "bereaved") == ["Queued", "Failed"]


async def test_a_webhook_to_a_metadata_address_fails_the_resource(
    k8s, kubeconfig_path, agent_id, monkeypatch
):
    monkeypatch.setenv("AGENT_GROWTH_WEBHOOK_ALLOW_PRIVATE", "false")
    body = refresh_body("nosy", agent_id, webhookUrl="http://169.254.169.254/latest/meta-data")
    async with running_operator():
        await create(k8s, body)
        await wait_until(lambda: phase(k8s, "nosy") == "Failed", what="Failed")

    status = resource(k8s, "nosy")["status"]
    assert status["message"].startswith("spec.webhookUrl: ")
    accepted = next(c for c in status["conditions"] if c["type"] == "Accepted")
    assert accepted["reason"] == "InvalidSpec"
    async with engine.session_factory()() as fresh:
        assert (await fresh.scalars(select(BackgroundTask))).all() == []


async def test_progress_reaches_the_status_of_a_running_task(
    k8s, kubeconfig_path, agent_id, monkeypatch
):
    monkeypatch.setenv("AGENT_GROWTH_WORKER_STEP_DELAY_S", "0.4")
    seen: list[tuple[str, int]] = []
    async with running_operator(), running_worker():
        await create(k8s, refresh_body("watched", agent_id))

        def record() -> bool:
            status = (resource(k8s, "watched") or {}).get("status") or {}
            if status.get("phase"):
                seen.append((status["phase"], status.get("progress", 0)))
            return status.get("phase") == "Completed"

        await wait_until(record, what="Completed")

    running = [progress for name, progress in seen if name == "Running"]
    assert running, f"never saw Running: {seen}"
    assert any(0 < progress < 100 for progress in running), seen
    assert [p for _, p in seen] == sorted(p for _, p in seen), "progress went backwards"


async def test_the_queue_position_of_a_waiting_task_is_shown(k8s, kubeconfig_path, agent_id):
    async with running_operator():
        await create(k8s, refresh_body("first", agent_id))
        await create(k8s, refresh_body("second", agent_id, priority="low"))
        await create(k8s, refresh_body("urgent", agent_id, priority="high"))

        def positions() -> dict[str, int | None]:
            return {
                name: ((resource(k8s, name) or {}).get("status") or {}).get("queuePosition")
                for name in ("urgent", "first", "second")
            }

        await wait_until(
            lambda: positions() == {"urgent": 1, "first": 2, "second": 3},
            what="queue positions 1, 2, 3",
        )


async def test_steps_far_back_in_the_queue_are_written_less_often_than_near_the_front(
    k8s, kubeconfig_path, agent_id, monkeypatch
):
    # Places settle as the operator accepts the resources, each step written at once.
    monkeypatch.setattr(mirror, "FAR_BACK_INTERVAL_S", 0.0)
    names = [f"waiting-{index:02d}" for index in range(mirror.QUEUE_FRONT_PLACES + 4)]

    def position(name: str) -> int | None:
        return ((resource(k8s, name) or {}).get("status") or {}).get("queuePosition")

    async with running_operator():
        for name in names:
            await create(k8s, refresh_body(name, agent_id))
        await wait_until(
            lambda: sorted(position(name) or 0 for name in names) == list(range(1, len(names) + 1)),
            what="every resource to show its place",
        )
        by_place = sorted(names, key=position)
        front, last = by_place[3], by_place[-1]
        # Longer than the test: every far-back step is held back until it is shortened again.
        monkeypatch.setattr(mirror, "FAR_BACK_INTERVAL_S", 3600.0)
        for name in by_place[:3]:
            await patch_spec(k8s, name, {"cancel": True})

        await wait_until(lambda: position(front) == 1, what="the front to move up")
        await asyncio.sleep(1.0)
        assert position(last) == len(names), "a step far back was written at the front's pace"
        # The step held back is not lost: once the interval has passed, a poll writes it.
        monkeypatch.setattr(mirror, "FAR_BACK_INTERVAL_S", 0.0)
        await wait_until(
            lambda: position(last) == len(names) - 3, timeout_s=10, what="the far step"
        )


async def test_the_status_the_operator_writes_is_kept_whole_by_the_strict_schema(
    k8s, kubeconfig_path, agent_id
):
    async with running_operator() as operator, running_worker():
        await create(k8s, refresh_body("kept", agent_id))
        await wait_until(lambda: phase(k8s, "kept") == "Completed", what="Completed")
        written = operator.memo.runtime.writer.last((NAMESPACE, "kept"))

    stored = resource(k8s, "kept")
    assert stored["status"] == written
    assert "kopf" not in stored["status"]
    annotations = stored["metadata"]["annotations"]
    assert f"{kube.GROUP}/last-handled-configuration" in annotations
    assert not [key for key in annotations if key.startswith("kopf.zalando.org/")]


async def test_one_refresh_costs_a_handful_of_api_writes(
    k8s, kubeconfig_path, agent_id, monkeypatch, redis_client
):
    """However often the worker reports, status writes stay few: the mirror coalesces."""
    monkeypatch.setenv("AGENT_GROWTH_OPERATOR_STATUS_INTERVAL_S", "1.0")
    monkeypatch.setenv("AGENT_GROWTH_WORKER_STEP_DELAY_S", "0.1")
    published: list[object] = []

    async def listen() -> None:
        async for event in events.subscribe(redis_client):
            published.append(event)

    listener = asyncio.create_task(listen())
    async with running_operator(), running_worker():
        await create(k8s, refresh_body("frugal", agent_id))
        await wait_until(lambda: phase(k8s, "frugal") == "Completed", what="Completed")
        await asyncio.sleep(1.5)  # anything still to be written is written by now
    listener.cancel()

    writes = k8s.writes(name="frugal")
    status = [w for w in writes if w.subresource == "status"]
    events_posted = [w for w in writes if w.resource.plural == "events"]
    kopf_own = [w for w in writes if w.resource.plural == kube.PLURAL and not w.subresource]
    print(
        f"\nAPI writes for one refresh: {len(writes)} in all; {len(status)} status patches, "
        f"{len(events_posted)} events, {len(kopf_own)} patches by kopf on the resource "
        f"(finalizer, label, bookkeeping); {len(published)} task events were published"
    )
    assert len(status) <= 4
    assert len(status) < len(published)
    assert len(events_posted) == 3
