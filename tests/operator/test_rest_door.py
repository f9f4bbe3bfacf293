"""The REST API in cluster mode, with the real operator and a worker behind the emulated server.

A refresh asked for over REST becomes a CoverageRefresh, which the operator queues; a REST
cancel ends the task, and the resource follows the row to Cancelled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from agent_growth.api.app import create_app
from agent_growth.settings import get_settings
from tests.conftest import API_KEY
from tests.operator.conftest import NAMESPACE, events_for, phase, resource, running_operator
from tests.running import fetch_task, running_worker, wait_until


@pytest.fixture
async def cluster_api(kubeconfig_path, monkeypatch) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("AGENT_GROWTH_KUBERNETES", "on")
    monkeypatch.setenv("AGENT_GROWTH_KUBERNETES_NAMESPACE", NAMESPACE)
    get_settings.cache_clear()
    app = create_app()
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api.test", headers={"X-API-Key": API_KEY}
        ) as client:
            yield client


async def test_a_rest_refresh_runs_through_its_resource_to_completed(k8s, cluster_api, agent_id):
    async with running_operator(), running_worker():
        response = await cluster_api.post(f"/api/v1/agents/{agent_id}/coverage/refresh")
        assert response.status_code == 202, response.text
        task_id = response.json()["task_id"]

        await wait_until(lambda: phase(k8s, task_id) == "Completed", what="Completed")
        status = await cluster_api.get(f"/api/v1/agents/{agent_id}/coverage/status/{task_id}")

    assert status.json()["status"] == "completed"
    assert resource(k8s, task_id)["status"]["taskId"] == task_id
    assert events_for(k8s, task_id) == ["Queued", "Started", "Completed"]


async def test_a_rest_cancel_of_a_running_refresh_ends_its_resource_cancelled(
    k8s, cluster_api, agent_id, monkeypatch
):
    monkeypatch.setenv("AGENT_GROWTH_WORKER_STEP_DELAY_S", "1.0")
    async with running_operator(), running_worker():
        response = await cluster_api.post(f"/api/v1/agents/{agent_id}/coverage/refresh")
        task_id = response.json()["task_id"]
        await wait_until(lambda: phase(k8s, task_id) == "Running", what="Running")

        cancelled = await cluster_api.delete(f"/api/v1/agents/tasks/{task_id}")
        assert cancelled.status_code == 204, cancelled.text
        await wait_until(lambda: phase(k8s, task_id) == "Cancelled", what="Cancelled")
        again = await cluster_api.delete(f"/api/v1/agents/tasks/{task_id}")

    row = await fetch_task(task_id)
    assert row is not None and row.status == "cancelled"
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]
    assert events_for(k8s, task_id) == ["Queued", "Started", "Cancelled"]
