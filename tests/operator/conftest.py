"""An API server emulator, a kubeconfig pointing at it, and operators and workers to run.

Operators run in the test's event loop (`kopf.operator` as an asyncio task), so they share the
loop, the database engine and Redis with the test, as the rest of the suite does. Timings are
shortened through the operator's settings; nothing about the behaviour changes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import kmock
import kopf
import prometheus_client
import pytest

from agent_growth import kube
from agent_growth.operator import main
from agent_growth.settings import get_settings
from tests import factories
from tests.operator import crd_schema
from tests.operator.emulator import KubernetesServer, kubeconfig

NAMESPACE = "team-a"
RESOURCE = f"{kube.GROUP}/{kube.VERSION}/{kube.PLURAL}"

FAST_OPERATOR = {
    "AGENT_GROWTH_OPERATOR_STATUS_INTERVAL_S": "0.3",
    "AGENT_GROWTH_OPERATOR_POLL_INTERVAL_S": "1.0",
    "AGENT_GROWTH_OPERATOR_BACKSTOP_INTERVAL_S": "0.5",
    "AGENT_GROWTH_OPERATOR_DRIFT_INTERVAL_S": "1.0",
    "AGENT_GROWTH_OPERATOR_DRIFT_MIN_AGE_S": "5",
    "AGENT_GROWTH_OPERATOR_CANCEL_WAIT_S": "3",
    "AGENT_GROWTH_HEARTBEAT_INTERVAL_S": "0.2",
    "AGENT_GROWTH_RECONCILE_INTERVAL_S": "0.5",
}


@pytest.fixture(autouse=True)
def _fast_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAST_OPERATOR.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


@pytest.fixture
async def k8s() -> AsyncIterator[KubernetesServer]:
    async with KubernetesServer() as server, kmock.Server(server):
        server.namespaces.add(NAMESPACE)
        server.install_core()
        server.install_crd_file(crd_schema.CRD_PATH)
        server.install_crd_file(crd_schema.PEERING_CRD_PATH)
        yield server


@pytest.fixture
async def kubeconfig_path(
    k8s: KubernetesServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Path]:
    """KUBECONFIG for every client in this process: kopf, kubernetes_asyncio, kubectl."""
    path = tmp_path / "kubeconfig"
    path.write_text(kubeconfig(str(k8s.url).rstrip("/")))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    yield path
    await kube.close()


@pytest.fixture
async def agent_id(session: Any) -> uuid.UUID:
    return await factories.small_corpus_agent(session)


class OperatorHandle:
    def __init__(self, task: asyncio.Task[None], stop: asyncio.Event, memo: kopf.Memo) -> None:
        self.task = task
        self.stop_flag = stop
        self.memo = memo

    @property
    def mirrored(self) -> set[tuple[str, str]]:
        """Resources whose status this operator has written or seen."""
        return set(self.memo.runtime.writer._written)

    async def stop(self) -> None:
        self.stop_flag.set()
        await asyncio.wait_for(self.task, timeout=30)


@asynccontextmanager
async def running_operator(
    *,
    namespaces: tuple[str, ...] = (NAMESPACE,),
    standalone: bool = True,
    priority: int | None = None,
    identity: str | None = None,
) -> AsyncIterator[OperatorHandle]:
    """An operator running in this event loop until the block ends."""
    get_settings.cache_clear()
    stop, ready, memo = asyncio.Event(), asyncio.Event(), kopf.Memo()
    task = asyncio.create_task(
        main.operate(
            namespaces=namespaces,
            standalone=standalone,
            priority=priority,
            stop_flag=stop,
            ready_flag=ready,
            identity=identity,
            memo=memo,
        )
    )
    handle = OperatorHandle(task, stop, memo)
    try:
        await asyncio.wait_for(ready.wait(), timeout=20)
        yield handle
    finally:
        if not task.done():
            await handle.stop()


def refresh_body(name: str, agent_id: uuid.UUID | str, **spec: Any) -> dict[str, Any]:
    """A CoverageRefresh as a user would write it with kubectl."""
    return {
        "apiVersion": kube.API_VERSION,
        "kind": kube.KIND,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"agentId": str(agent_id), **spec},
    }


async def create(k8s: KubernetesServer, body: dict[str, Any]) -> dict[str, Any]:
    namespace = body["metadata"]["namespace"]
    response = await k8s.post(
        f"/apis/{kube.GROUP}/{kube.VERSION}/namespaces/{namespace}/{kube.PLURAL}", json=body
    )
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def patch_spec(k8s: KubernetesServer, name: str, spec: dict[str, Any]) -> None:
    response = await k8s.patch(
        f"/apis/{kube.GROUP}/{kube.VERSION}/namespaces/{NAMESPACE}/{kube.PLURAL}/{name}",
        json={"spec": spec},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status == 200, await response.text()


async def delete(k8s: KubernetesServer, name: str) -> None:
    response = await k8s.delete(
        f"/apis/{kube.GROUP}/{kube.VERSION}/namespaces/{NAMESPACE}/{kube.PLURAL}/{name}"
    )
    assert response.status == 200, await response.text()


def resource(k8s: KubernetesServer, name: str) -> dict[str, Any] | None:
    return k8s.read(RESOURCE, NAMESPACE, name)


def phase(k8s: KubernetesServer, name: str) -> str | None:
    obj = resource(k8s, name)
    return None if obj is None else (obj.get("status") or {}).get("phase")


def reconcile_errors() -> float:
    """How many reconcile errors this process has counted so far (the alert's series)."""
    value = prometheus_client.REGISTRY.get_sample_value(
        "agent_growth_operator_reconciles_total", {"outcome": "error"}
    )
    return value or 0.0


def events_for(k8s: KubernetesServer, name: str) -> list[str]:
    """Reasons of the Kubernetes events posted about the object `name`, in order."""
    found = []
    for (res, _, _), obj in k8s.objects.items():
        if res.plural != "events" or obj.deleted:
            continue
        raw = obj.raw
        if raw.get("involvedObject", {}).get("name") == name:
            found.append((raw["metadata"]["resourceVersion"], raw.get("reason")))
    return [reason for _, reason in sorted(found, key=lambda item: int(item[0]))]
