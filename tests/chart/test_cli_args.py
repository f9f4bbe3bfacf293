"""Every container the chart runs starts a command the CLI accepts, with settings it reads.

The chart and the code are written apart; a renamed flag would only show as a crash-looping pod,
and a renamed setting not at all. Here each rendered container's arguments are parsed by the CLI
itself, without running it, and every AGENT_GROWTH_* variable is checked against the settings.
"""

from __future__ import annotations

from typing import Any

import click
import pytest
import typer

from agent_growth.cli import app
from agent_growth.settings import Settings
from tests.chart.manifests import find

NAMESPACED = {"operator": {"watch": {"namespaces": ["team-a", "team-b"]}}}
CLUSTER_WIDE = {"operator": {"watch": {"clusterWide": True}}}


def containers(manifests: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for kind in ("Deployment", "Job"):
        for manifest in find(manifests, kind):
            pod = manifest["spec"]["template"]["spec"]
            for container in pod.get("initContainers", []) + pod["containers"]:
                found.append((f"{kind}/{manifest['metadata']['name']}", container))
    return found


@pytest.mark.parametrize(
    "values", [{}, NAMESPACED, CLUSTER_WIDE], ids=["defaults", "namespaced", "cluster-wide"]
)
def test_each_container_command_parses(render, values) -> None:
    command = typer.main.get_command(app)
    checked = 0
    for where, container in containers(render(values)):
        args = [*container.get("command", [])[1:], *container.get("args", [])]
        if not args:
            continue
        try:
            sub_command = command.get_command(click.Context(command), args[0])
            assert sub_command is not None, f"{where}: no command {args[0]!r}"
            sub_command.make_context(args[0], list(args[1:]))
        except click.UsageError as exc:
            pytest.fail(f"{where}: `agent-growth {' '.join(args)}` is refused: {exc}")
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize(
    "values", [{}, NAMESPACED, CLUSTER_WIDE], ids=["defaults", "namespaced", "cluster-wide"]
)
def test_each_setting_the_chart_passes_is_one_the_code_reads(render, values) -> None:
    known = {f"AGENT_GROWTH_{name.upper()}" for name in Settings.model_fields}
    passed = set()
    for manifest in render(values):
        if manifest["kind"] in {"Secret", "ConfigMap"}:
            passed.update(k for k in (manifest.get("data") or {}) if k.startswith("AGENT_GROWTH_"))
            passed.update(
                k for k in (manifest.get("stringData") or {}) if k.startswith("AGENT_GROWTH_")
            )
    for _, container in containers(render(values)):
        passed.update(
            env["name"]
            for env in container.get("env", [])
            if env["name"].startswith("AGENT_GROWTH_")
        )

    assert passed, "the chart passes no settings at all"
    assert passed - known == set()
