"""Carrying task changes from PostgreSQL and Redis into CoverageRefresh status, cheaply.

A worker may report progress many times a second, and a cluster may hold thousands of
resources; the API server must not feel either. So the mirror is built from three parts:

- `Hub` listens once, for the whole operator, to the Redis `tasks.events` channel and wakes the
  mirror of the task that changed (and, when the queue moved, the mirrors of pending tasks,
  whose positions shifted). Signals only hurry things: each mirror also re-reads on its own.
- `StatusWriter` writes a resource's status at most once per `min_interval_s`, and only when
  something visible changed: it remembers the stanza it wrote last and sends a merge patch to
  the `/status` subresource only when the new one differs.
- `ResourceLogger` puts the resource and the task id on every record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis
from kubernetes_asyncio import client
from redis.exceptions import RedisError

from agent_growth import kube, metrics
from agent_growth.operator import status as status_
from agent_growth.tasks import events

logger = logging.getLogger(__name__)

# After Redis drops the subscription, wait this long before subscribing again.
RESUBSCRIBE_DELAY_S: Final = 1.0

ResourceKey = tuple[str, str]
"""(namespace, name) of a CoverageRefresh."""


class ResourceLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes records with `[namespace/name task=<id>]` and attaches the same as extras."""

    def __init__(self, base: logging.Logger, *, namespace: str, name: str, task_id: str) -> None:
        super().__init__(base, {"resource": f"{namespace}/{name}", "task_id": task_id})

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        kwargs["extra"] = extra | dict(kwargs.get("extra") or {})
        return f"[{extra['resource']} task={extra['task_id']}] {msg}", kwargs


class Hub:
    """Wake-ups for the per-resource mirrors, fed by one Redis subscription."""

    def __init__(self) -> None:
        self._wakers: dict[str, asyncio.Event] = {}
        self._pending: set[str] = set()

    def register(self, task_id: str) -> asyncio.Event:
        waker = self._wakers.setdefault(task_id, asyncio.Event())
        return waker

    def unregister(self, task_id: str) -> None:
        self._wakers.pop(task_id, None)
        self._pending.discard(task_id)

    def mark_pending(self, task_id: str, pending: bool) -> None:
        if pending:
            self._pending.add(task_id)
        else:
            self._pending.discard(task_id)

    def wake(self, task_id: str) -> None:
        waker = self._wakers.get(task_id)
        if waker is not None:
            waker.set()

    def wake_all(self) -> None:
        for waker in self._wakers.values():
            waker.set()

    def notify(self, event: events.TaskEvent) -> None:
        self.wake(event.task_id)

        # Any change other than a running task's progress moves the queue: a task was taken,
        # cancelled or handed back, so the positions of the tasks behind it changed.
        if event.status != "running" or event.progress == 0:
            for task_id in list(self._pending):
                self.wake(task_id)

    async def listen(self, redis: aioredis.Redis) -> None:
        """Forward task events to the mirrors until cancelled, subscribing again after errors."""
        while True:
            try:
                async for event in events.subscribe(redis):
                    self.notify(event)
            except (RedisError, OSError) as exc:
                logger.warning(
                    "task events unavailable, retrying in %.0f s: %s", RESUBSCRIBE_DELAY_S, exc
                )

            # Whatever was published while we were away is lost; let every mirror re-read.
            await asyncio.sleep(RESUBSCRIBE_DELAY_S)
            self.wake_all()


@dataclass
class _Written:
    status: dict[str, Any]
    at_s: float


class StatusWriter:
    """Status patches for CoverageRefresh resources: paced, deduplicated and counted."""

    def __init__(self, *, api: client.ApiClient, min_interval_s: float) -> None:
        self._objects = client.CustomObjectsApi(api)
        self._min_interval_s = min_interval_s
        self._written: dict[ResourceKey, _Written] = {}
        self._locks: dict[ResourceKey, asyncio.Lock] = {}

    def last(self, key: ResourceKey) -> dict[str, Any] | None:
        written = self._written.get(key)
        return written.status if written else None

    def seed(self, key: ResourceKey, current: Mapping[str, Any] | None) -> None:
        """Start from the status the resource already has (after a restart), unless known."""
        if key not in self._written and current:
            own = {k: v for k, v in current.items() if k in status_.OWN_FIELDS}
            self._written[key] = _Written(dict(own), 0.0)

    def forget(self, key: ResourceKey) -> None:
        self._written.pop(key, None)
        self._locks.pop(key, None)

    async def sync(
        self,
        key: ResourceKey,
        build: Callable[[dict[str, Any] | None], Awaitable[dict[str, Any] | None]],
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Build and write one resource's status: (the stanza before, the one written or None).

        Reading, building and writing happen under one lock per resource, after the pause the
        pace demands, so a stale read can never overwrite a newer write.
        """
        async with self._locks.setdefault(key, asyncio.Lock()):
            await self.pace(key)
            previous = self.last(key)
            new = await build(previous)
            if new is None:
                return previous, None
            return previous, await self.write(key, new)

    async def pace(self, key: ResourceKey) -> None:
        """Sleep until this resource may be written again; changes meanwhile are merged."""
        written = self._written.get(key)
        if written is not None:
            remaining_s = written.at_s + self._min_interval_s - time.monotonic()
            if remaining_s > 0:
                await asyncio.sleep(remaining_s)

    async def write(self, key: ResourceKey, new: dict[str, Any]) -> dict[str, Any] | None:
        """Patch the status when it differs from the last one written; the stanza, or None."""
        previous = self.last(key)
        settled = status_.settle(previous, new)
        if settled == previous:
            return None

        namespace, name = key
        await self._objects.patch_namespaced_custom_object_status(
            kube.GROUP,
            kube.VERSION,
            namespace,
            kube.PLURAL,
            name,
            {"status": status_.merge_patch(previous, settled)},
            # The generated client would pick a JSON patch for a dict body; this is a merge patch.
            _content_type="application/merge-patch+json",  # type: ignore[call-arg]
        )
        metrics.OPERATOR_API_WRITES.labels(kind="status").inc()
        self._written[key] = _Written(settled, time.monotonic())
        return settled
