"""Carrying task changes from PostgreSQL and Redis into CoverageRefresh status, cheaply.

A worker may report progress many times a second, and a cluster may hold thousands of
resources; the API server must not feel either. So the mirror is built from three parts:

- `Hub` listens once, for the whole operator, to the Redis `tasks.events` channel and wakes the
  mirror of the task that changed, which reads its own task (one row). When the queue moved,
  the positions of every pending task shifted: rather than each of their mirrors reading, the
  runtime reads them all at once, at most once per `QUEUE_REFRESH_INTERVAL_S`, and the hub
  hands out the results. Signals only hurry things: each mirror also re-reads on its own.
- `StatusWriter` writes a resource's status at most once per `min_interval_s`, and only when
  something visible changed: it remembers the stanza it wrote last and sends a merge patch to
  the `/status` subresource only when the new one differs. A waiting resource far back in the
  queue is rewritten less often still (`FAR_BACK_INTERVAL_S`), since every task that starts
  moves each of them up a place.

Which resource and task a record is about comes from the handlers' log context (`logs.about`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis
from kubernetes_asyncio import client
from redis.exceptions import RedisError

from agent_growth import errors, kube, logs, metrics
from agent_growth.operator import status as status_
from agent_growth.tasks import events

logger = logging.getLogger(__name__)

# After Redis drops the subscription, wait this long before subscribing again.
RESUBSCRIBE_DELAY_S: Final = 1.0

# Queue moves within this long are answered by one batched read of the pending tasks. A busy
# queue moves many times a second; a waiting resource's position need not follow each step,
# but should reach its status within about a second, on top of the status writes' own pacing.
QUEUE_REFRESH_INTERVAL_S: Final = 0.5

# A waiting resource moves up a place whenever a task ahead of it starts; writing every step of
# every waiting resource would cost the API server a patch per second for each. Among the first
# places, where someone watching waits for their turn, each step is written at the status pace;
# further back a step means little, and is written at most this often. Ten places is a few
# rounds of a typical worker pool; ten seconds keeps a thousand waiting resources to about a
# hundred patches a second.
QUEUE_FRONT_PLACES: Final = 10
FAR_BACK_INTERVAL_S: Final = 10.0

ResourceKey = tuple[str, str]
"""(namespace, name) of a CoverageRefresh."""


class Hub:
    """Wake-ups for the per-resource mirrors, fed by one Redis subscription.

    A change of one task wakes that task's mirror only. A change that moves the queue also
    flags `queue_moved`, and the runtime's refresher answers the flags of a whole interval with
    one batched read for every pending task, handing each mirror its fields (`deliver`). Each
    own change of a task counts up its version; fields read before that change are refused, so
    a batch can never bring back a state older than the one a mirror read for itself.
    """

    def __init__(self) -> None:
        self._wakers: dict[str, asyncio.Event] = {}
        self._pending: set[str] = set()
        self._versions: dict[str, int] = {}
        self._delivered: dict[str, dict[str, Any]] = {}
        self.queue_moved = asyncio.Event()

    def register(self, task_id: str) -> asyncio.Event:
        waker = self._wakers.setdefault(task_id, asyncio.Event())
        return waker

    def unregister(self, task_id: str) -> None:
        self._wakers.pop(task_id, None)
        self._pending.discard(task_id)
        self._versions.pop(task_id, None)
        self._delivered.pop(task_id, None)

    def mark_pending(self, task_id: str, pending: bool) -> None:
        if pending:
            self._pending.add(task_id)
        else:
            self._pending.discard(task_id)

    def pending(self) -> dict[str, int]:
        """The pending tasks whose mirrors run, each with its version as of now."""
        return {task_id: self._versions.get(task_id, 0) for task_id in self._pending}

    def wake(self, task_id: str) -> None:
        """The task itself changed: its mirror reads it again, ignoring fields read before."""
        self._versions[task_id] = self._versions.get(task_id, 0) + 1
        self._delivered.pop(task_id, None)
        waker = self._wakers.get(task_id)
        if waker is not None:
            waker.set()

    def wake_all(self) -> None:
        for task_id in list(self._wakers):
            self.wake(task_id)

    def queue_changed(self) -> None:
        """Tasks were added to or taken from the queue; the waiting ones' positions moved."""
        if self._pending:
            self.queue_moved.set()

    def deliver(self, task_id: str, fields: dict[str, Any], *, version: int) -> None:
        """Hand a mirror its task's fields from a batched read made at `version`."""
        if task_id not in self._wakers or self._versions.get(task_id, 0) != version:
            return
        self._delivered[task_id] = fields
        self._wakers[task_id].set()

    def take(self, task_id: str) -> dict[str, Any] | None:
        """The fields delivered to this task's mirror since it last looked, if any."""
        return self._delivered.pop(task_id, None)

    def notify(self, event: events.TaskEvent) -> None:
        self.wake(event.task_id)

        # Any change other than a running task's progress moves the queue: a task was taken,
        # cancelled or handed back, so the positions of the tasks behind it changed.
        if event.status != "running" or event.progress == 0:
            self.queue_changed()

    async def listen(self, redis: aioredis.Redis) -> None:
        """Forward task events to the mirrors until cancelled, subscribing again after errors."""
        outage = logs.Outage(logger, "listening for task events", first_wait_s=RESUBSCRIBE_DELAY_S)
        while True:
            delay_s = RESUBSCRIBE_DELAY_S
            try:
                async for event in events.subscribe(redis, on_subscribed=outage.recovered):
                    self.notify(event)
            except (RedisError, OSError) as exc:
                delay_s = outage.failed(errors.describe(exc))

            # Whatever was published while we were away is lost; let every mirror re-read.
            await asyncio.sleep(delay_s)
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
        if settled == previous or self._far_back_and_recent(key, previous, settled):
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
            _request_timeout=kube.REQUEST_TIMEOUT_S,
        )
        metrics.OPERATOR_API_WRITES.labels(kind="status").inc()
        self._written[key] = _Written(settled, time.monotonic())
        return settled

    def _far_back_and_recent(
        self, key: ResourceKey, previous: dict[str, Any] | None, new: dict[str, Any]
    ) -> bool:
        """A queue step of a resource far back, written less than FAR_BACK_INTERVAL_S ago.

        The step is not lost: the next queue move or poll of the resource writes it.
        """
        if previous is None or not status_.only_the_queue_moved(previous, new):
            return False
        # The first place shown, or a fall from the front to far back, is news.
        before, after = previous.get("queuePosition"), new.get("queuePosition")
        if before is None or after is None or min(before, after) <= QUEUE_FRONT_PLACES:
            return False
        return time.monotonic() - self._written[key].at_s < FAR_BACK_INTERVAL_S
