"""Driving the operator the way its users do: `kubectl apply`, `get`, `patch` and `delete`."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.operator import crd_schema
from tests.operator.conftest import (
    NAMESPACE,
    phase,
    resource,
    running_operator,
)
from tests.running import fetch_task, running_worker, wait_until

KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed; install it to run the kubectl tests"
)


async def kubectl(kubeconfig: Path, cache: Path, *args: str, stdin: str | None = None) -> str:
    """Run kubectl against the emulator without blocking the event loop the emulator runs in."""
    command = [
        str(KUBECTL),
        f"--kubeconfig={kubeconfig}",
        f"--cache-dir={cache}",
        f"--namespace={NAMESPACE}",
        "--request-timeout=20s",
        *args,
    ]
    done = await asyncio.to_thread(
        subprocess.run, command, input=stdin, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def _example(agent_id: object, name: str) -> str:
    text = (crd_schema.EXAMPLES_DIR / name).read_text()
    return text.replace("3f2b8c1e-6d4a-4e8b-9f1c-2a7d5e9b0c41", str(agent_id))


async def test_kubectl_apply_runs_an_example_to_completion(
    k8s, kubeconfig_path, agent_id, tmp_path
):
    cache = tmp_path / "kubectl-cache"
    async with running_operator(), running_worker():
        out = await kubectl(
            kubeconfig_path,
            cache,
            "apply",
            "--validate=false",
            "-f",
            "-",
            stdin=_example(agent_id, "minimal.yaml"),
        )
        assert "refresh-minimal created" in out
        await wait_until(lambda: phase(k8s, "refresh-minimal") == "Completed", what="Completed")

        listing = await kubectl(kubeconfig_path, cache, "get", "covref", "-o", "wide")
        phase_by_kubectl = await kubectl(
            kubeconfig_path,
            cache,
            "get",
            "coveragerefresh",
            "refresh-minimal",
            "-o",
            "jsonpath={.status.phase} {.status.progress}",
        )

    assert "refresh-minimal" in listing
    assert phase_by_kubectl == "Completed 100"
    task = await fetch_task(resource(k8s, "refresh-minimal")["status"]["taskId"])
    assert task.status == "completed"


async def test_kubectl_cancels_by_apply_and_cleans_up_by_delete(
    k8s, kubeconfig_path, agent_id, tmp_path
):
    cache = tmp_path / "kubectl-cache"
    async with running_operator():
        await kubectl(
            kubeconfig_path,
            cache,
            "apply",
            "--validate=false",
            "-f",
            "-",
            stdin=_example(agent_id, "minimal.yaml"),
        )
        await wait_until(lambda: phase(k8s, "refresh-minimal") == "Pending", what="Pending")
        task_id = resource(k8s, "refresh-minimal")["status"]["taskId"]

        out = await kubectl(
            kubeconfig_path,
            cache,
            "apply",
            "--validate=false",
            "-f",
            "-",
            stdin=_example(agent_id, "cancel.yaml"),
        )
        assert "refresh-minimal configured" in out
        await wait_until(lambda: phase(k8s, "refresh-minimal") == "Cancelled", what="Cancelled")

        await kubectl(kubeconfig_path, cache, "delete", "covref", "refresh-minimal", "--wait=true")
        assert resource(k8s, "refresh-minimal") is None

    assert (await fetch_task(task_id)).status == "cancelled"
