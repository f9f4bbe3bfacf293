"""The API's door into Kubernetes: one client per process, and calls that give up in time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent_growth import kube
from agent_growth.errors import ClusterUnavailable
from tests.operator.conftest import NAMESPACE, resource
from tests.operator.emulator import kubeconfig


async def _create(name: str) -> None:
    await kube.create_coverage_refresh(
        name=name,
        namespace=NAMESPACE,
        agent_id=str(uuid.uuid4()),
        priority="medium",
        active_deadline_s=60,
        webhook_url=None,
    )


async def test_calls_share_one_client_whose_credentials_are_loaded_once(
    k8s, kubeconfig_path, tmp_path, monkeypatch
):
    await _create("first")
    client = await kube.shared_client()

    # The kubeconfig is read when the client is made, not again for every call.
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "gone"))
    await _create("second")
    assert await kube.shared_client() is client
    assert resource(k8s, "first") is not None and resource(k8s, "second") is not None

    # Closed, the next call makes a new client and reads the credentials anew.
    await kube.close()
    with pytest.raises(ClusterUnavailable, match="no Kubernetes credentials"):
        await _create("third")


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A server that accepts connections and never answers, as a hung API server would."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_create_the_api_server_never_answers_gives_up_after_the_request_timeout(
    silent_server, tmp_path: Path, monkeypatch
):
    path = tmp_path / "kubeconfig"
    path.write_text(kubeconfig(silent_server))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(kube, "REQUEST_TIMEOUT_S", 0.5)

    try:
        with pytest.raises(ClusterUnavailable, match="creating CoverageRefresh"):
            # The outer limit only keeps a regression from hanging the suite.
            await asyncio.wait_for(_create("unanswered"), timeout=20)
    finally:
        await kube.close()
