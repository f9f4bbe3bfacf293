"""The whole system in a real Kubernetes cluster: image, CRD, chart, a CoverageRefresh, its history.

Needs Docker, `kind`, `kubectl` and `helm` on the machine; see
docs/kubernetes.md. Without them the test is skipped, saying what is missing, unless
`E2E_REQUIRED=1`, which turns the skip into a failure (for CI jobs that must not go green by
skipping). Run it with `pytest -m e2e tests/e2e`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "agent-growth:e2e"
NAMESPACE = "agent-growth-e2e"
CLUSTER = os.environ.get("E2E_CLUSTER_NAME", "agent-growth-e2e")


def _missing_tools() -> list[str]:
    missing = [tool for tool in ("docker", "kind", "kubectl", "helm") if shutil.which(tool) is None]
    if "docker" not in missing:
        probe = subprocess.run(["docker", "info"], capture_output=True, timeout=30)
        if probe.returncode != 0:
            missing.append("a running Docker daemon")
    return missing


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("E2E_REQUIRED") == "1":
        pytest.fail(f"E2E_REQUIRED=1 but {reason}")
    pytest.skip(reason)


def _run(*command: str, stdin: str | None = None, timeout_s: float = 600) -> str:
    done = subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    missing = _missing_tools()
    if missing:
        _skip_or_fail(f"the kind end-to-end test needs {', '.join(missing)}")
    try:
        from pytest_kind import KindCluster
    except ImportError:
        _skip_or_fail("pytest-kind is not installed (pip install pytest-kind)")

    kind_cluster = KindCluster(
        CLUSTER, kind_path=Path(shutil.which("kind")), kubectl_path=Path(shutil.which("kubectl"))
    )
    kind_cluster.create()
    try:
        _run("docker", "build", "-t", IMAGE, str(ROOT), timeout_s=1800)
        kind_cluster.load_docker_image(IMAGE)
        yield kind_cluster
    finally:
        if os.environ.get("E2E_KEEP_CLUSTER") != "1":
            kind_cluster.delete()


def _kubectl(cluster, *args: str, stdin: str | None = None) -> str:
    return _run("kubectl", f"--kubeconfig={cluster.kubeconfig_path}", *args, stdin=stdin)


def _install(cluster) -> None:
    """PostgreSQL and Redis for the test, then the CRDs and the chart (or the operator alone)."""
    _kubectl(cluster, "create", "namespace", NAMESPACE)
    _kubectl(cluster, "apply", "-n", NAMESPACE, "-f", str(ROOT / "tests/e2e/backing-services.yaml"))
    _kubectl(
        cluster,
        "wait",
        "-n",
        NAMESPACE,
        "--for=condition=Available",
        "deployment/postgresql",
        "deployment/redis",
        "--timeout=300s",
    )
    _kubectl(cluster, "apply", "-f", str(ROOT / "crds"))

    chart = ROOT / "charts" / "agent-growth"
    _run(
        "helm",
        "upgrade",
        "--install",
        "agent-growth",
        str(chart),
        f"--kubeconfig={cluster.kubeconfig_path}",
        "--namespace",
        NAMESPACE,
        "--wait",
        "--timeout",
        "10m",
        "--skip-crds",
        "--set",
        "image.repository=agent-growth",
        "--set",
        "image.tag=e2e",
        "--set",
        "image.pullPolicy=Never",
        "--set",
        "config.environment=development",
        "--set",
        "secrets.apiKeys=e2e-key",
        "--set",
        "monitoring.serviceMonitor.enabled=false",
        timeout_s=900,
    )


def _psql(cluster, sql: str) -> str:
    return _kubectl(
        cluster,
        "exec",
        "-n",
        NAMESPACE,
        "deployment/postgresql",
        "--",
        "psql",
        "-U",
        "agent_growth",
        "-v",
        "ON_ERROR_STOP=1",
        "-tAc",
        sql,
    ).strip()


def _seed_agent(cluster) -> str:
    """One taxonomy node and one agent over it, written straight into the migrated database."""
    node_id, agent_id = str(uuid.uuid4()), str(uuid.uuid4())
    _psql(
        cluster,
        "INSERT INTO taxonomy_nodes (id, version, key, label, path, level) "
        f"VALUES ('{node_id}', '1', 'Science', 'Science', 'Science', 1)",
    )
    _psql(
        cluster,
        "INSERT INTO agents (id, name, taxonomy_node_ids, taxonomy_version) "
        f"VALUES ('{agent_id}', 'e2e', ARRAY['{node_id}']::uuid[], '1')",
    )
    return agent_id


def test_a_coverage_refresh_applied_with_kubectl_completes_and_writes_history(cluster):
    _install(cluster)
    agent_id = _seed_agent(cluster)
    manifest = (
        (ROOT / "crds/examples/minimal.yaml")
        .read_text()
        .replace("3f2b8c1e-6d4a-4e8b-9f1c-2a7d5e9b0c41", agent_id)
    )
    _kubectl(cluster, "apply", "-n", NAMESPACE, "-f", "-", stdin=manifest)

    deadline = time.monotonic() + 300
    status: dict = {}
    while time.monotonic() < deadline:
        raw = _kubectl(cluster, "get", "covref", "refresh-minimal", "-n", NAMESPACE, "-o", "json")
        status = json.loads(raw).get("status") or {}
        if status.get("phase") in ("Completed", "Failed", "Cancelled", "TimedOut"):
            break
        time.sleep(2)
    assert status.get("phase") == "Completed", status

    task_id = status["taskId"]
    assert _psql(cluster, f"SELECT status FROM background_tasks WHERE task_id = '{task_id}'") == (
        "completed"
    )
    assert _psql(cluster, f"SELECT count(*) FROM coverage_history WHERE task_id = '{task_id}'") == (
        "1"
    )
