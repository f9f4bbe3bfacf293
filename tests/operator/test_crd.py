"""The CoverageRefresh CRD: its examples are valid, bad specs are refused, our status is kept."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from agent_growth import kube
from agent_growth.operator import status as status_
from agent_growth.tasks import lifecycle, queue
from agent_growth.tasks import status as task_status
from tests.operator import crd_schema

CRD = crd_schema.load_documents(crd_schema.CRD_PATH)[0]
SCHEMA = crd_schema.openapi_schema(CRD, kube.VERSION)


def _refresh(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": kube.API_VERSION,
        "kind": kube.KIND,
        "metadata": {"name": "r", "namespace": "default"},
        "spec": spec,
    }


def test_the_crd_names_the_resource_as_kubectl_users_will_type_it():
    names = CRD["spec"]["names"]
    assert CRD["metadata"]["name"] == f"{kube.PLURAL}.{kube.GROUP}"
    assert (CRD["spec"]["group"], CRD["spec"]["scope"]) == (kube.GROUP, "Namespaced")
    assert (names["kind"], names["plural"], names["singular"]) == (
        kube.KIND,
        kube.PLURAL,
        "coveragerefresh",
    )
    assert names["shortNames"] == ["covref"]
    assert names["categories"] == ["agentgrowth"]
    version = CRD["spec"]["versions"][0]
    assert version["name"] == kube.VERSION
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Agent": ".spec.agentId",
        "Phase": ".status.phase",
        "Progress": ".status.progress",
        "Queue": ".status.queuePosition",
        "Age": ".metadata.creationTimestamp",
    }


@pytest.mark.parametrize(
    "path", sorted(crd_schema.EXAMPLES_DIR.glob("*.yaml")), ids=lambda p: p.name
)
def test_every_example_is_a_valid_coverage_refresh(path):
    (example,) = crd_schema.load_documents(path)
    stored, errors = crd_schema.admit(SCHEMA, example)
    assert errors == []
    assert stored["spec"]["priority"] in ("high", "medium", "low")
    assert 1 <= stored["spec"]["activeDeadlineSeconds"] <= 3600


def test_the_examples_cover_the_minimal_the_urgent_and_the_cancelled_case():
    examples = {
        path.name: crd_schema.admit(SCHEMA, crd_schema.load_documents(path)[0])[0]["spec"]
        for path in crd_schema.EXAMPLES_DIR.glob("*.yaml")
    }
    minimal = examples["minimal.yaml"]
    assert minimal == {
        "agentId": minimal["agentId"],
        "priority": "medium",
        "activeDeadlineSeconds": 300,
        "cancel": False,
        "ttlSecondsAfterFinished": 86400,
    }
    urgent = examples["high-priority.yaml"]
    assert urgent["priority"] == "high" and urgent["webhookUrl"].startswith("https://")
    assert urgent["activeDeadlineSeconds"] == 120
    assert examples["cancel.yaml"]["cancel"] is True


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({}, "agentId"),
        ({"agentId": "not-a-uuid"}, "spec.agentId"),
        ({"agentId": str(uuid.uuid4()), "priority": "urgent"}, "spec.priority"),
        ({"agentId": str(uuid.uuid4()), "activeDeadlineSeconds": 0}, "spec.activeDeadlineSeconds"),
        (
            {"agentId": str(uuid.uuid4()), "activeDeadlineSeconds": 3601},
            "spec.activeDeadlineSeconds",
        ),
        ({"agentId": str(uuid.uuid4()), "webhookUrl": "ftp://x"}, "spec.webhookUrl"),
        (
            {"agentId": str(uuid.uuid4()), "ttlSecondsAfterFinished": -1},
            "spec.ttlSecondsAfterFinished",
        ),
    ],
)
def test_a_bad_spec_is_refused_naming_its_field(spec, field):
    _, errors = crd_schema.admit(SCHEMA, _refresh(**spec))
    assert errors
    assert any(field in error for error in errors), errors


async def _statuses(session, redis, agent_id) -> dict[str, dict[str, Any]]:
    """The status the operator builds for a task in each state, from real rows."""
    built: dict[str, dict[str, Any]] = {}

    async def snapshot(name: str, task_id: str, previous: dict[str, Any] | None = None) -> None:
        task = await session.get(type(pending), task_id, populate_existing=True)
        fields = await task_status.task_status(session, redis, task=task)
        built[name] = status_.build_status(fields, generation=3, previous=previous)

    pending = await lifecycle.create_task(session, agent_id=agent_id, resource_namespace="ns")
    await lifecycle.enqueue(redis, pending)
    await queue.announce_worker(redis, worker_id="w", slots=1)
    await snapshot("pending", pending.task_id)

    running = await lifecycle.create_task(session, agent_id=agent_id)
    await lifecycle.claim(session, task_id=running.task_id, worker_id="w")
    await lifecycle.report_progress(
        session, redis, task_id=running.task_id, worker_id="w", progress=40
    )
    await snapshot("running", running.task_id)

    await lifecycle.finish(
        session,
        redis,
        task_id=running.task_id,
        worker_id="w",
        status="completed",
        result={"overall_coverage": 61.25, "total_documents": 3, "total_chunks": 6},
    )
    await snapshot("completed", running.task_id, built["running"])

    for outcome in ("failed", "timeout"):
        task = await lifecycle.create_task(session, agent_id=agent_id)
        await lifecycle.claim(session, task_id=task.task_id, worker_id="w")
        await lifecycle.finish(
            session, redis, task_id=task.task_id, worker_id="w", status=outcome, error="boom"
        )
        await snapshot(outcome, task.task_id)

    cancelled = await lifecycle.create_task(session, agent_id=agent_id)
    await lifecycle.cancel(session, redis, task_id=cancelled.task_id)
    await snapshot("cancelled", cancelled.task_id)

    built["rejected"] = status_.rejected_status(
        task_id=None, reason="AgentNotFound", message="agent x not found", generation=1
    )
    built["task deleted"] = status_.task_deleted_status(built["running"], generation=3)
    return built


async def test_every_status_the_operator_writes_survives_the_strict_schema(
    session, redis_client, agent_id
):
    for state, status in (await _statuses(session, redis_client, agent_id)).items():
        body = _refresh(agentId=str(uuid.uuid4()))
        body["status"] = status
        stored, errors = crd_schema.admit(SCHEMA, body)
        assert errors == [], (state, errors)
        assert stored["status"] == status, f"{state}: the API server would prune fields"


async def test_the_statuses_show_what_a_user_needs_in_each_phase(session, redis_client, agent_id):
    built = await _statuses(session, redis_client, agent_id)
    assert {name: s["phase"] for name, s in built.items()} == {
        "pending": "Pending",
        "running": "Running",
        "completed": "Completed",
        "failed": "Failed",
        "timeout": "TimedOut",
        "cancelled": "Cancelled",
        "rejected": "Failed",
        "task deleted": "Failed",
    }
    assert built["pending"]["queuePosition"] == 1
    assert built["running"]["progress"] == 40
    assert "estimatedCompletionTime" in built["running"]
    assert built["completed"]["result"] == {
        "overallCoverage": 61.25,
        "totalDocuments": 3,
        "totalChunks": 6,
    }
    assert built["failed"]["message"] == "boom"
    assert built["task deleted"]["startTime"] == built["running"]["startTime"]
    assert "estimatedCompletionTime" not in built["task deleted"]
    for status in built.values():
        assert {c["type"] for c in status["conditions"]} == set(status_.CONDITION_TYPES)
        assert status["observedGeneration"] in (1, 3)
    # A condition that did not change keeps the time of its last transition.
    accepted_then = built["running"]["conditions"][0]
    accepted_now = built["completed"]["conditions"][0]
    assert accepted_then["lastTransitionTime"] == accepted_now["lastTransitionTime"]
    dt.datetime.fromisoformat(accepted_now["lastTransitionTime"].replace("Z", "+00:00"))
