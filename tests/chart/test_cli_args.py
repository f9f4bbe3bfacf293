"""Every container the chart runs starts a command the `agent-growth` CLI accepts.

The chart and the CLI are written apart; a renamed flag would only show as a crash-looping pod.
Here each rendered container's arguments are parsed by the CLI itself, without running it.
"""

from __future__ import annotations

from typing import Any

import click
import pytest
import typer

from agent_growth.cli import app
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
