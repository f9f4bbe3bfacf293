"""Running the operator: kopf's settings as this operator needs them, and the entry point.

Choices made here, each for a reason:

- kopf's bookkeeping (handler progress, the last handled spec) goes to annotations under
  `agentgrowth.io/`, never to `status.kopf`, so the strict status schema has nothing to prune
  and the status stays ours;
- only warnings become Kubernetes events by themselves; the lifecycle events (Queued, Started,
  Completed, ...) are posted on purpose, so the API server gets a handful per task, not a stream
  of "handler succeeded";
- peering is on unless `standalone`: replicas of one Deployment each take a random priority
  (unless one is set), the highest acts and the others stand by until it disappears.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Collection, Iterator, Sequence
from typing import Any, Final

import kopf
import prometheus_client

from agent_growth import kube
from agent_growth.operator import handlers
from agent_growth.settings import get_settings

logger = logging.getLogger(__name__)

FINALIZER: Final = f"{kube.GROUP}/finalizer"

# Watch requests end on the server after this long and are reopened; an idle connection that a
# load balancer dropped silently is noticed within this time.
WATCH_SERVER_TIMEOUT_S: Final = 300

# Random priorities come from a range wide enough that two replicas practically never tie.
RANDOM_PRIORITY_RANGE: Final = (1, 2**31 - 1)


class _OtherTasks(Collection[asyncio.Task[Any]]):
    """Every task counts as someone else's when kopf looks for "hung" tasks on exit.

    kopf assumes it owns the event loop: on exit it cancels every task created since it
    started. Embedded beside other work (a second operator in one loop, a test) that would
    cancel other people's tasks. kopf still stops its own root tasks, which end their
    children; anything left over is cancelled by `asyncio.run` when the process ends.
    """

    def __contains__(self, item: object) -> bool:
        return True

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(())

    def __len__(self) -> int:
        return 0


def build_settings(
    *,
    clusterwide: bool,
    standalone: bool = False,
    peering_name: str | None = None,
    priority: int | None = None,
) -> kopf.OperatorSettings:
    own = get_settings()
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=kube.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=kube.GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT_S

    settings.peering.standalone = standalone
    settings.peering.mandatory = not standalone
    settings.peering.clusterwide = clusterwide
    settings.peering.name = peering_name or own.operator_peering_name
    if priority is None:
        priority = own.operator_peering_priority
    if priority is None:
        priority = random.randint(*RANDOM_PRIORITY_RANGE)
    settings.peering.priority = priority
    return settings


async def operate(
    *,
    namespaces: Sequence[str] = (),
    standalone: bool = False,
    peering_name: str | None = None,
    priority: int | None = None,
    liveness_endpoint: str | None = None,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
    identity: str | None = None,
    memo: kopf.Memo | None = None,
) -> None:
    """Run the operator in the current event loop until `stop_flag` is set or it is cancelled.

    With no `namespaces`, it watches the whole cluster. `memo` receives the operator's
    `runtime` once started, for whoever embeds the operator and wants to look inside.
    """
    watched = tuple(namespaces)
    settings = build_settings(
        clusterwide=not watched,
        standalone=standalone,
        peering_name=peering_name,
        priority=priority,
    )
    logger.info(
        "operator starting: %s, peering %s",
        f"namespaces {', '.join(watched)}" if watched else "all namespaces",
        "off" if standalone else f"{settings.peering.name!r} priority {settings.peering.priority}",
    )
    tasks = await kopf.spawn_tasks(
        registry=handlers.build_registry(namespaces=watched),
        settings=settings,
        clusterwide=not watched,
        namespaces=watched,
        memo=memo if memo is not None else kopf.Memo(),
        liveness_endpoint=liveness_endpoint,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
        identity=identity,  # type: ignore[arg-type]  # kopf's NewType of str
    )
    await kopf.run_tasks(tasks, ignored=_OtherTasks())


def run(
    *,
    namespaces: Sequence[str] = (),
    standalone: bool = False,
    peering_name: str | None = None,
    priority: int | None = None,
    liveness_endpoint: str | None = None,
    metrics_port: int | None = None,
) -> None:
    """The `agent-growth operator` command: watch `namespaces`, or the whole cluster if none."""
    # Without credentials kopf would retry forever; no retry can make them appear.
    asyncio.run(kube.check_credentials())
    if metrics_port is not None:
        prometheus_client.start_http_server(metrics_port)
    asyncio.run(
        operate(
            namespaces=namespaces,
            standalone=standalone,
            peering_name=peering_name,
            priority=priority,
            liveness_endpoint=liveness_endpoint,
        )
    )
