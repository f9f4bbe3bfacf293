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

import logging
from typing import Any

from kubernetes_asyncio import client
from sqlalchemy import func, select

from agent_growth import kube
from agent_growth.db.models import BackgroundTask
from agent_growth.operator.runtime import Runtime
from agent_growth.tasks import lifecycle

logger = logging.getLogger(__name__)

# Resources per list request: a cluster with thousands of them is read in pages of this many,
# so neither the API server nor the operator holds one huge response.
LIST_PAGE_SIZE = 500


async def expire_overdue(runtime: Runtime) -> list[str]:
    """End running tasks past their deadline and grace; wake their mirrors."""
    async with runtime.session() as session:
        expired = await lifecycle.expire_overdue(
            session, runtime.redis, grace_s=runtime.settings.deadline_grace_s
        )
    for task_id in expired:
        logger.warning(
            "task %s overran its deadline; the operator ended it",
            task_id,
            extra={"task_id": task_id},
        )
        runtime.hub.wake(task_id)
    return expired


async def _list_resources(runtime: Runtime) -> list[dict[str, Any]]:
    """Every CoverageRefresh in the watched namespaces, read a page at a time.

    The pages of one listing come from the same snapshot (the API server's `continue` token
    pins the first page's resourceVersion); a token that expired fails the listing, and the
    next round starts over.
    """
    objects = client.CustomObjectsApi(runtime.api)
    scopes: tuple[str | None, ...] = runtime.namespaces or (None,)
    items: list[dict[str, Any]] = []
    for namespace in scopes:
        token: str | None = None
        while True:
            paging: dict[str, Any] = {
                "limit": LIST_PAGE_SIZE,
                "_request_timeout": kube.REQUEST_TIMEOUT_S,
            }
            if token:
                paging["_continue"] = token
            if namespace is None:
                listing = await objects.list_cluster_custom_object(
                    kube.GROUP, kube.VERSION, kube.PLURAL, **paging
                )
            else:
                listing = await objects.list_namespaced_custom_object(
                    kube.GROUP, kube.VERSION, namespace, kube.PLURAL, **paging
                )
            items.extend(listing["items"])
            token = (listing.get("metadata") or {}).get("continue")
            if not token:
                break
    return items


async def reconcile_drift(runtime: Runtime) -> list[str]:
    """Cancel unfinished tasks of watched namespaces whose resource is gone; their ids."""
    # The resources are listed before the rows are read: a resource created in between has a
    # row younger than the minimum age, so it cannot be mistaken for a vanished one. The age is
    # measured by the database's clock, which wrote `created_at`, not by this pod's.
    present = {kube.task_id_of(resource) for resource in await _list_resources(runtime)}
    # make_interval(years, months, weeks, days, hours, mins, secs)
    min_age = func.make_interval(0, 0, 0, 0, 0, 0, runtime.settings.operator_drift_min_age_s)
    statement = select(BackgroundTask.task_id, BackgroundTask.resource_namespace).where(
        BackgroundTask.status.in_(("pending", "running")),
        BackgroundTask.resource_namespace.is_not(None),
        BackgroundTask.created_at < func.now() - min_age,
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
            extra={"task_id": task_id},
        )
        cancelled.append(task_id)
    if not orphaned:
        logger.debug("no drift: %d resources, %d unfinished rows", len(present), len(rows))
    return cancelled
