"""The CoverageRefresh resource as the rest of the system sees it, and the calls that make one.

In cluster mode the API does not queue a refresh itself: it records the task row and creates a
CoverageRefresh named after the task, and the operator queues it. This module is that door into
Kubernetes. It lives beside the core, not in `operator/`, because the API may not import the
operator; the operator uses it too, for its own reads and writes.

Credentials come from the pod's service account when running in a cluster, otherwise from the
kubeconfig (`KUBECONFIG` or `~/.kube/config`), so a developer's `kubectl` context just works.
Every failure to reach or satisfy the API server becomes `ClusterUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final, TypedDict

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from agent_growth.errors import ClusterUnavailable

logger = logging.getLogger(__name__)

GROUP: Final = "agentgrowth.io"
VERSION: Final = "v1alpha1"
PLURAL: Final = "coveragerefreshes"
KIND: Final = "CoverageRefresh"
API_VERSION: Final = f"{GROUP}/{VERSION}"

TASK_ID_LABEL: Final = f"{GROUP}/task-id"
"""Label carrying the task id, so that a task's resource can be found by selector."""

# Names the API gives its resources: the task id itself (see `tasks.lifecycle.new_task_id`).
TASK_NAME_PATTERN: Final = re.compile(
    r"^agent-coverage-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)

# Failures of the transport underneath the API client: refused, reset, timed out.
TRANSPORT_ERRORS: Final = (aiohttp.ClientError, OSError, asyncio.TimeoutError)

# Where a pod finds its service account; its presence means we run inside a cluster.
_SERVICE_HOST_ENV: Final = "KUBERNETES_SERVICE_HOST"


class CoverageRefreshSpec(TypedDict, total=False):
    agentId: str
    priority: str
    activeDeadlineSeconds: int
    webhookUrl: str
    cancel: bool
    ttlSecondsAfterFinished: int


def task_id_for(*, name: str, uid: str) -> str:
    """The task behind a resource: its own name when the API created it, else one from its uid.

    Resources applied with kubectl have names of their users' choosing. Deriving the task id
    from the uid makes it the same on every retry and restart (no second row for one resource),
    and new for a resource deleted and created again under the same name.
    """
    if TASK_NAME_PATTERN.match(name):
        return name
    return f"agent-coverage-{uid.lower()}"


async def _load_config(configuration: client.Configuration) -> None:
    if os.environ.get(_SERVICE_HOST_ENV):
        config.load_incluster_config(client_configuration=configuration)
    else:
        # The library reads KUBECONFIG once, at import; read it now, as kubectl does.
        await config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
        )


@asynccontextmanager
async def api_client() -> AsyncIterator[client.ApiClient]:
    """An API client with in-cluster or kubeconfig credentials, closed on exit."""
    configuration = client.Configuration()
    try:
        await _load_config(configuration)
    except (ConfigException, OSError) as exc:
        raise ClusterUnavailable(
            f"no Kubernetes credentials: {exc}; run inside a cluster or set KUBECONFIG"
        ) from exc
    async with client.ApiClient(configuration) as api:
        yield api


def coverage_refresh_body(
    *,
    name: str,
    namespace: str,
    agent_id: str,
    priority: str,
    active_deadline_s: int,
    webhook_url: str | None,
) -> dict[str, Any]:
    spec: CoverageRefreshSpec = {
        "agentId": agent_id,
        "priority": priority,
        "activeDeadlineSeconds": active_deadline_s,
    }
    if webhook_url:
        spec["webhookUrl"] = webhook_url
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": {TASK_ID_LABEL: name}},
        "spec": spec,
    }


async def create_coverage_refresh(
    *,
    name: str,
    namespace: str,
    agent_id: str,
    priority: str,
    active_deadline_s: int,
    webhook_url: str | None,
) -> None:
    """Create the CoverageRefresh that the operator will queue; `name` is the task id."""
    body = coverage_refresh_body(
        name=name,
        namespace=namespace,
        agent_id=str(agent_id),
        priority=priority,
        active_deadline_s=active_deadline_s,
        webhook_url=webhook_url,
    )
    try:
        async with api_client() as api:
            await client.CustomObjectsApi(api).create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body
            )
    except ApiException as exc:
        raise ClusterUnavailable(
            f"creating {KIND} {namespace}/{name} failed: {exc.status} {exc.reason}"
        ) from exc
    except TRANSPORT_ERRORS as exc:
        raise ClusterUnavailable(f"creating {KIND} {namespace}/{name} failed: {exc}") from exc
    logger.info("created %s %s/%s for agent %s", KIND, namespace, name, agent_id)


async def delete_coverage_refresh(*, name: str, namespace: str) -> None:
    """Delete a CoverageRefresh; the operator's finalizer cancels its task first.

    A resource that is already gone is not an error: the outcome the caller wants holds.
    """
    try:
        async with api_client() as api:
            await client.CustomObjectsApi(api).delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            )
    except ApiException as exc:
        if exc.status == 404:
            logger.info("%s %s/%s was already gone", KIND, namespace, name)
            return
        raise ClusterUnavailable(
            f"deleting {KIND} {namespace}/{name} failed: {exc.status} {exc.reason}"
        ) from exc
    except TRANSPORT_ERRORS as exc:
        raise ClusterUnavailable(f"deleting {KIND} {namespace}/{name} failed: {exc}") from exc
    logger.info("deleted %s %s/%s", KIND, namespace, name)
