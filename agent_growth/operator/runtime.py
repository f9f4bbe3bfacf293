"""What one running operator shares between its handlers: connections, the hub, the writer.

kopf hands every handler a `memo`; the operator keeps one `Runtime` in it, started by the
start-up handler and closed by the clean-up handler. Holding it in the memo rather than in
module globals lets two operators run in one process, as the peering tests do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from kubernetes_asyncio import client
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth import kube
from agent_growth.db import engine as db_engine
from agent_growth.db.models import BackgroundTask
from agent_growth.errors import TaskAlreadyFinished, TaskNotFound
from agent_growth.operator.mirror import QUEUE_REFRESH_INTERVAL_S, Hub, StatusWriter
from agent_growth.settings import Settings, get_settings
from agent_growth.tasks import lifecycle, queue
from agent_growth.tasks import status as task_status

logger = logging.getLogger(__name__)

# How often a deletion re-reads the row while waiting for a running task to stop.
CANCEL_POLL_S = 0.2


@dataclass
class Runtime:
    settings: Settings
    redis: aioredis.Redis
    api: client.ApiClient
    hub: Hub
    writer: StatusWriter
    namespaces: tuple[str, ...]
    """Watched namespaces; empty when the operator watches the whole cluster."""
    _stack: contextlib.AsyncExitStack
    _loops: list[asyncio.Task[None]] = field(default_factory=list)
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def start(cls, *, namespaces: tuple[str, ...]) -> Runtime:
        settings = get_settings()
        stack = contextlib.AsyncExitStack()
        api = await stack.enter_async_context(kube.api_client())
        redis = queue.connect()
        stack.push_async_callback(redis.aclose)
        runtime = cls(
            settings=settings,
            redis=redis,
            api=api,
            hub=Hub(),
            writer=StatusWriter(api=api, min_interval_s=settings.operator_status_interval_s),
            namespaces=namespaces,
            _stack=stack,
        )
        runtime.spawn("task events", runtime.hub.listen(redis))
        runtime.spawn("queue positions", runtime.refresh_queue_positions())
        return runtime

    def spawn(self, name: str, coro: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("operator loop %r stopped", name)

        self._loops.append(asyncio.create_task(guarded(), name=f"agent-growth {name}"))

    def every(self, name: str, *, interval_s: float, step: Callable[[], Awaitable[Any]]) -> None:
        """Run `step` now and then every `interval_s`; a failing step is logged, not fatal."""

        async def loop() -> None:
            # Ends on `_closing` as well as on cancellation, which a client library may swallow.
            while not self._closing.is_set():
                try:
                    await step()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("operator loop %r failed; again in %.0f s", name, interval_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), timeout=interval_s)

        self.spawn(name, loop())

    async def close(self) -> None:
        self._closing.set()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await self._stack.aclose()

    def session(self) -> AsyncSession:
        return db_engine.session_factory()()

    async def task_fields(self, task_id: str) -> dict[str, Any] | None:
        """What the core says about a task now, or None when there is no such row."""
        async with self.session() as session:
            task = await session.get(BackgroundTask, task_id)
            if task is None:
                return None
            return await task_status.task_status(session, self.redis, task=task)

    async def pending_fields(self, task_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """`task_status` fields of those of the tasks still pending, read for all at once.

        One query for the rows, then `task_statuses`, whose cost does not grow with their number.
        """
        async with self.session() as session:
            statement = select(BackgroundTask).where(
                BackgroundTask.task_id.in_(task_ids), BackgroundTask.status == "pending"
            )
            tasks = list((await session.scalars(statement)).all())
            if not tasks:
                return {}
            return await task_status.task_statuses(session, self.redis, tasks=tasks)

    async def refresh_queue_positions(self) -> None:
        """Whenever the queue moved, read every pending task at once and hand out the fields."""
        while True:
            await self.hub.queue_moved.wait()
            # Moves during this pause are answered by the same read.
            await asyncio.sleep(QUEUE_REFRESH_INTERVAL_S)
            self.hub.queue_moved.clear()
            pending = self.hub.pending()
            if not pending:
                continue

            try:
                found = await self.pending_fields(list(pending))
            except (SQLAlchemyError, RedisError, OSError) as exc:
                logger.warning("queue positions unavailable; the mirrors poll instead: %r", exc)
                continue
            logger.debug("queue moved: %d pending tasks read at once", len(pending))
            for task_id, version in pending.items():
                if task_id in found:
                    self.hub.deliver(task_id, found[task_id], version=version)
                else:
                    # No longer pending: its mirror reads what it became.
                    self.hub.wake(task_id)

    async def cancel(self, task_id: str) -> tuple[str | None, bool]:
        """Cancel a task the one way every door does: (its status after, whether it changed).

        The status is None when there is no such row; a finished task is left as it was.
        """
        async with self.session() as session:
            try:
                task = await lifecycle.cancel(session, self.redis, task_id=task_id)
            except TaskNotFound:
                return None, False
            except TaskAlreadyFinished as exc:
                return exc.status, False
            return task.status, True

    async def task_state(self, task_id: str) -> str | None:
        async with self.session() as session:
            return await session.scalar(
                select(BackgroundTask.status).where(BackgroundTask.task_id == task_id)
            )

    async def cancel_and_wait(self, task_id: str, *, wait_s: float) -> tuple[str | None, bool]:
        """Cancel, then wait up to `wait_s` for the worker of a running task to end it."""
        state, changed = await self.cancel(task_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while state == "running" and loop.time() < deadline:
            await asyncio.sleep(CANCEL_POLL_S)
            state = await self.task_state(task_id)
        return state, changed
