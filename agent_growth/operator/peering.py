"""The peering object through which operator replicas pick the one that acts.

kopf keeps peering in the status of a `KopfPeering` (namespaced operators, one per watched
namespace) or `ClusterKopfPeering` (cluster-wide operators). Every replica writes a keep-alive
with its priority there; a replica that sees a live peer of higher priority pauses, and one that
sees an equal priority pauses too (a warning says so). kopf does not create that object itself,
so the operator does at start-up; the peering CRDs (`crds/kopf-peering.yaml`) must be installed.
"""

from __future__ import annotations

import logging
from typing import Final

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from agent_growth import metrics

logger = logging.getLogger(__name__)

PEERING_GROUP: Final = "kopf.dev"
PEERING_VERSION: Final = "v1"


async def ensure_peering_object(
    api: client.ApiClient, *, name: str, namespaces: tuple[str, ...]
) -> None:
    """Create the peering object(s) unless they exist; a missing CRD is reported, not fatal.

    The Helm chart creates them and grants no `create`, so existing objects are looked up
    first: creating is for installations without the chart.
    """
    objects = client.CustomObjectsApi(api)
    scopes: list[str | None] = list(namespaces) if namespaces else [None]
    for namespace in scopes:
        kind = "KopfPeering" if namespace else "ClusterKopfPeering"
        where = f" in {namespace}" if namespace else ""
        try:
            if namespace:
                await objects.get_namespaced_custom_object(
                    PEERING_GROUP, PEERING_VERSION, namespace, "kopfpeerings", name
                )
            else:
                await objects.get_cluster_custom_object(
                    PEERING_GROUP, PEERING_VERSION, "clusterkopfpeerings", name
                )
            continue
        except ApiException as exc:
            if exc.status != 404:
                logger.warning(
                    "cannot read %s %r%s: %s %s", kind, name, where, exc.status, exc.reason
                )
                continue

        body = {
            "apiVersion": f"{PEERING_GROUP}/{PEERING_VERSION}",
            "kind": kind,
            "metadata": {"name": name},
        }
        try:
            if namespace:
                await objects.create_namespaced_custom_object(
                    PEERING_GROUP, PEERING_VERSION, namespace, "kopfpeerings", body
                )
            else:
                await objects.create_cluster_custom_object(
                    PEERING_GROUP, PEERING_VERSION, "clusterkopfpeerings", body
                )
        except ApiException as exc:
            if exc.status == 409:
                continue  # another replica created it meanwhile
            logger.warning(
                "could not create %s %r%s (%s %s); install crds/kopf-peering.yaml and create "
                "it, or run the operator with --standalone",
                kind,
                name,
                where,
                exc.status,
                exc.reason,
            )
            continue
        metrics.OPERATOR_API_WRITES.labels(kind="peering").inc()
        logger.info("created %s %r%s", kind, name, where)
