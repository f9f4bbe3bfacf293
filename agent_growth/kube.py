"""The CoverageRefresh resource as the rest of the system sees it, and the calls that make one.

In cluster mode the API does not queue a refresh itself: it records the task row and creates a
CoverageRefresh named after the task, and the operator queues it. This module is that door into
Kubernetes. It lives beside the core, not in `operator/`, because the API may not import the
operator; the operator uses it too, for its own reads and writes.

Credentials come from the pod's service account when running in a cluster, otherwise from the
kubeconfig (`KUBECONFIG` or `~/.kube/config`), so a developer's `kubectl` context just works.
They are loaded once per event loop, into one API client that every call of that loop shares
(`shared_client`) until `close()`; loading reads files with blocking I/O, which must not happen
on every request. Every failure to reach or satisfy the API server becomes `ClusterUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final, TypedDict

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from agent_growth.errors import ClusterUnavailable
from agent_growth.tasks import lifecycle

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
    rf"^{re.escape(lifecycle.TASK_ID_PREFIX)}"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)

# One API request may take this long, connecting included. It must stay well under the 30 s
# that workers leave a cluster-mode row unqueued before queuing it themselves
# (`lifecycle.CLUSTER_REQUEUE_MIN_AGE_S`): the API creates the resource inside that window, and
# a create that hangs past it would let a worker run a task whose resource may still appear.
REQUEST_TIMEOUT_S: Final = 10.0

# Failures of the transport underneath the API client: refused, reset, timed out.
TRANSPORT_ERRORS: Final = (aiohttp.ClientError, OSError, asyncio.TimeoutError)

# Where a pod finds its service account; its presence means we run inside a cluster.
_SERVICE_HOST_ENV: Final = "KUBERNETES_SERVICE_HOST"

# The API server's answer to expired credentials (a kubeconfig's exec token lasts about an hour).
_UNAUTHORIZED: Final = 401


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
    return f"{lifecycle.TASK_ID_PREFIX}{uid.lower()}"


def task_id_of(body: Mapping[str, Any]) -> str:
    """The task id of a CoverageRefresh body: the one its status records, else `task_id_for`."""
    recorded = (body.get("status") or {}).get("taskId")
    meta = body["metadata"]
    return str(recorded or task_id_for(name=meta["name"], uid=meta["uid"]))


async def check_credentials() -> None:
    """Raise ClusterUnavailable, naming what is missing, unless credentials can be loaded."""
    await _configuration()


async def _configuration() -> client.Configuration:
    configuration = client.Configuration()
    try:
        if os.environ.get(_SERVICE_HOST_ENV):
            # Re-reads the projected token file as it rotates, so a long-lived client stays valid.
            config.load_incluster_config(client_configuration=configuration)
        else:
            # The library reads KUBECONFIG once, at import; read it now, as kubectl does.
            await config.load_kube_config(
                config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
            )
    except (ConfigException, OSError) as exc:
        raise ClusterUnavailable(
            f"no Kubernetes credentials: {exc}; run inside a cluster or set KUBECONFIG"
        ) from exc
    return configuration


@asynccontextmanager
async def api_client() -> AsyncIterator[client.ApiClient]:
    """An API client of its own with fresh credentials, closed on exit (for the operator)."""
    async with client.ApiClient(await _configuration()) as api:
        yield api


@dataclass
class _Shared:
    """The client shared by the calls of one event loop; clients cannot cross loops."""

    loop: asyncio.AbstractEventLoop
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    api: client.ApiClient | None = None


_shared: _Shared | None = None


def _current() -> _Shared:
    global _shared
    loop = asyncio.get_running_loop()
    if _shared is None or _shared.loop is not loop:
        # A client of a loop that ended cannot be closed from this one; it is simply dropped.
        _shared = _Shared(loop)
    return _shared


async def shared_client() -> client.ApiClient:
    """This event loop's API client, made (and its credentials loaded) on first use."""
    shared = _current()
    async with shared.lock:
        if shared.api is None:
            shared.api = client.ApiClient(await _configuration())
        return shared.api


async def close() -> None:
    """Close this process's shared client, if any; the next call makes a new one."""
    global _shared
    shared, _shared = _shared, None
    if shared is None or shared.api is None:
        return
    if shared.loop is asyncio.get_running_loop():
        await shared.api.close()


async def _reset_credentials(api: client.ApiClient) -> None:
    """Drop the shared client if it is still `api`, so the next call loads credentials anew."""
    shared = _current()
    async with shared.lock:
        if shared.api is api:
            shared.api = None
            await api.close()


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
    where = f"{KIND} {namespace}/{name}"
    try:
        for attempt in (1, 2):
            api = await shared_client()
            try:
                await client.CustomObjectsApi(api).create_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, body, _request_timeout=REQUEST_TIMEOUT_S
                )
                break
            except ApiException as exc:
                # Credentials from a kubeconfig may expire under a long-lived client: reload once.
                if exc.status != _UNAUTHORIZED or attempt == 2:
                    raise
                logger.info("creating %s: credentials refused; loading them again", where)
                await _reset_credentials(api)
    except ApiException as exc:
        raise ClusterUnavailable(f"creating {where} failed: {exc.status} {exc.reason}") from exc
    except TRANSPORT_ERRORS as exc:
        raise ClusterUnavailable(f"creating {where} failed: {exc!r}") from exc
    logger.info("created %s for agent %s", where, agent_id)
