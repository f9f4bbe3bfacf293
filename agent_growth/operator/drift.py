"""Keeping rows and resources in agreement when events alone cannot: deadlines and drift.

Two periodic checks run beside the handlers:

- the deadline backstop: workers enforce `activeDeadlineSeconds` themselves, but a worker that
  hangs or dies cannot; past the deadline plus a grace period the core's `expire_overdue` ends
  the task as timed out, and the resource's mirror shows TimedOut;
- drift: a running or pending task whose CoverageRefresh no longer exists (it was deleted
  while the operator was down and its finalizer removed by hand, or the API created the row
  but the resource never arrived) is cancelled, so nothing runs that nobody can see.

Both are conditional updates in PostgreSQL, so two operator replicas running them at the same
time do no harm: the second finds nothing left to do.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from kubernetes_asyncio import client
from sqlalchemy import select

from agent_growth import kube
from agent_growth.db.models import BackgroundTask
from agent_growth.operator.runtime import Runtime
from agent_growth.tasks import lifecycle

logger = logging.getLogger(__name__)


async def expire_overdue(runtime: Runtime) -> list[str]:
    """End running tasks past their deadline and grace; wake their mirrors."""
    async with runtime.session() as session:
        expired = await lifecycle.expire_overdue(
            session, runtime.redis, grace_s=runtime.settings.operator_deadline_grace_s
        )
    for task_id in expired:
        logger.warning("task %s overran its deadline; the operator ended it", task_id)
        runtime.hub.wake(task_id)
    return expired


def task_id_of(resource: dict[str, Any]) -> str:
    meta = resource["metadata"]
    recorded = (resource.get("status") or {}).get("taskId")
    return str(recorded or kube.task_id_for(name=meta["name"], uid=meta["uid"]))


async def _list_resources(runtime: Runtime) -> list[dict[str, Any]]:
    objects = client.CustomObjectsApi(runtime.api)
    if not runtime.namespaces:
        listing = await objects.list_cluster_custom_object(kube.GROUP, kube.VERSION, kube.PLURAL)
        return list(listing["items"])
    items: list[dict[str, Any]] = []
    for namespace in runtime.namespaces:
        listing = await objects.list_namespaced_custom_object(
            kube.GROUP, kube.VERSION, namespace, kube.PLURAL
        )
        items.extend(listing["items"])
    return items


async def reconcile_drift(runtime: Runtime) -> list[str]:
    """Cancel unfinished tasks of watched namespaces whose resource is gone; their ids."""
    # The resources are listed before the rows are read: a resource created in between has a
    # row younger than the minimum age, so it cannot be mistaken for a vanished one.
    present = {task_id_of(resource) for resource in await _list_resources(runtime)}
    oldest = dt.datetime.now(dt.UTC) - dt.timedelta(
        seconds=runtime.settings.operator_drift_min_age_s
    )
    statement = select(BackgroundTask.task_id, BackgroundTask.resource_namespace).where(
        BackgroundTask.status.in_(("pending", "running")),
        BackgroundTask.resource_namespace.is_not(None),
        BackgroundTask.created_at < oldest,
    )
    if runtime.namespaces:
        statement = statement.where(BackgroundTask.resource_namespace.in_(runtime.namespaces))
    async with runtime.session() as session:
        rows = (await session.execute(statement)).all()

    orphaned = [(task_id, namespace) for task_id, namespace in rows if task_id not in present]
    cancelled: list[str] = []
    for task_id, namespace in orphaned:
        state, _ = await runtime.cancel(task_id)
        logger.warning(
            "task %s lost its CoverageRefresh in namespace %s; cancelled (now %s)",
            task_id,
            namespace,
            state,
        )
        cancelled.append(task_id)
    if not orphaned:
        logger.debug("no drift: %d resources, %d unfinished rows", len(present), len(rows))
    return cancelled
