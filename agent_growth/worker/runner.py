"""The worker process: takes tasks from the queue and runs them under a lease and a deadline.

One process runs up to `concurrency` refreshes at once as asyncio tasks, beside a few loops:
a heartbeat that renews its leases and notices cancellation requests in PostgreSQL, a listener
for the Redis cancellation signal (the fast path), a reconciler that reclaims lapsed leases and
re-queues what Redis lost, and webhook delivery, which never takes a task slot.

On SIGTERM the worker takes no new work, lets running tasks finish for `worker_drain_timeout_s`,
then hands the rest back to the queue without counting an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth import errors, logs, metrics
from agent_growth.db import engine
from agent_growth.db.models import BackgroundTask
from agent_growth.errors import QueueUnavailable
from agent_growth.settings import get_settings
from agent_growth.tasks import events, lifecycle, queue
from agent_growth.webhooks import delivery
from agent_growth.worker import health, refresh

logger = logging.getLogger(__name__)

StopReason = Literal["cancel", "lost", "hand_back"]

# What `lifecycle.finish` records: status, and result, error or history as they apply.
Outcome = dict[str, Any]


class LeaseLost(Exception):
    """The task's lease was taken over; its work must stop without recording anything."""


# How long an idle worker blocks on the wake-up list before looking at the queue again.
IDLE_WAIT_S = 1.0


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(self, *, concurrency: int = 2, worker_id: str | None = None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self.worker_id = worker_id or default_worker_id()
        self.settings = get_settings()
        self.stopping = asyncio.Event()
        # Heartbeats and the reconciler keep going while draining; they stop after it.
        self._helpers_stop = asyncio.Event()
        # Webhooks of tasks that finish while draining still go out: delivery stops last.
        self._delivery_stop = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._stop_reasons: dict[str, StopReason] = {}
        self._finishing: set[str] = set()
        self._redis: aioredis.Redis = queue.connect()
        self.liveness = health.Liveness(interval_s=self.settings.heartbeat_interval_s)

    def request_stop(self) -> None:
        if not self.stopping.is_set():
            logger.info("worker %s stopping: no new work will be taken", self.worker_id)
        self.stopping.set()

    @property
    def running_task_ids(self) -> list[str]:
        return list(self._running)

    async def run(self) -> None:
        """Work until `request_stop` (or SIGTERM/SIGINT), then drain and return."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.request_stop)

        logger.info("worker %s started with %d slots", self.worker_id, self.concurrency)
        helpers = [
            asyncio.create_task(self._every(self.settings.heartbeat_interval_s, self._heartbeat)),
            asyncio.create_task(self._every(self.settings.reconcile_interval_s, self._reconcile)),
            asyncio.create_task(self._every(queue.ANNOUNCE_INTERVAL_S, self._announce)),
            asyncio.create_task(self._listen_for_cancellations()),
        ]
        delivering = asyncio.create_task(delivery.run_delivery_loop(stop=self._delivery_stop))
        try:
            await self._take_work()
            await self._drain()
        finally:
            self.stopping.set()
            self._helpers_stop.set()
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self._stop_delivery(delivering)
            with contextlib.suppress(RedisError, OSError):
                await queue.retire_worker(
                    self._redis, worker_id=self.worker_id, slots=self.concurrency
                )
            await self._redis.aclose()
            logger.info("worker %s stopped", self.worker_id)

    async def _stop_delivery(self, delivering: asyncio.Task[None]) -> None:
        """Send the first attempt of events staged while draining, then stop delivering.

        Later attempts of those events, if any are needed, are left to the other workers.
        """
        grace_s = self.settings.webhook_timeout_s + 1
        try:
            await asyncio.wait_for(delivery.deliver_due(), timeout=grace_s)
        except Exception as exc:  # Exiting matters more than these attempts; others retry.
            logger.warning("last webhook deliveries before exit failed: %r", exc)
        finally:
            self._delivery_stop.set()
        try:
            await asyncio.wait_for(delivering, timeout=grace_s)
        except Exception as exc:
            logger.warning("webhook delivery did not stop cleanly: %r", exc)

    async def _take_work(self) -> None:
        outage = logs.Outage(logger, f"worker {self.worker_id} taking work")
        while not self.stopping.is_set():
            if len(self._running) >= self.concurrency:
                await self._wait_for_free_slot()
                continue
            try:
                task = await self._next_task()
            except (RedisError, OSError, SQLAlchemyError, QueueUnavailable) as exc:
                await self._sleep_unless_stopping(outage.failed(errors.describe(exc)))
                continue
            outage.recovered()
            if task is None:
                continue
            self._spawn(task)

    def _spawn(self, task: BackgroundTask) -> None:
        running = asyncio.create_task(self._execute(task))
        self._running[task.task_id] = running

        # A done callback, not a `finally` in `_execute`: a task cancelled before its first
        # step never runs its body, and its slot must be freed all the same.
        def forget(_: asyncio.Task[None]) -> None:
            self._running.pop(task.task_id, None)
            self._finishing.discard(task.task_id)
            self._stop_reasons.pop(task.task_id, None)

        running.add_done_callback(forget)

    async def _next_task(self) -> BackgroundTask | None:
        popped = await queue.pop(self._redis)
        if popped is None:
            await queue.wait_for_work(self._redis, timeout_s=IDLE_WAIT_S)
            return None
        task_id, priority, score = popped
        try:
            async with engine.session_factory()() as session:
                task = await lifecycle.claim(session, task_id=task_id, worker_id=self.worker_id)
        except SQLAlchemyError:
            # Undecided: PostgreSQL did not answer. Keep the task's place for the next pop.
            await queue.put_back(self._redis, task_id=task_id, priority=priority, score=score)
            raise
        if task is None:
            logger.debug("task %s popped but no longer pending; dropped", task_id)
            return None
        logger.info("task %s started by %s (attempt %d)", task_id, self.worker_id, task.attempts)
        await events.publish(self._redis, events.TaskEvent(task_id, "running", 0))
        return task

    async def _execute(self, task: BackgroundTask) -> None:
        """Run one claimed task to a recorded outcome; every path frees its slot."""
        task_id = task.task_id
        logs.current_task_id.set(task_id)
        metrics.TASKS_RUNNING.inc()
        outcome: Outcome | None = None
        try:
            # One session, hence one connection at a time, per running task.
            async with engine.session_factory()() as session:
                outcome = await self._run(task, session)
                if outcome is not None:
                    self._finishing.add(task_id)
                    await lifecycle.finish(
                        session, self._redis, task_id=task_id, worker_id=self.worker_id, **outcome
                    )
        except (SQLAlchemyError, RedisError, OSError) as exc:
            if outcome is not None:
                # Its lease lapses and another worker takes the task again.
                logger.warning("task %s could not be recorded: %s", task_id, errors.describe(exc))
        try:
            if outcome is None:
                await self._stopped(task_id, self._stop_reasons.get(task_id, "lost"))
        except (SQLAlchemyError, RedisError, OSError, QueueUnavailable) as exc:
            logger.warning(
                "task %s stopped, but that could not be recorded: %s", task_id, errors.describe(exc)
            )
        finally:
            metrics.TASKS_RUNNING.dec()

    async def _run(self, task: BackgroundTask, session: AsyncSession) -> Outcome | None:
        """The refresh under its deadline: the outcome to record, or None when it was stopped."""
        task_id = task.task_id

        async def report(percent: int) -> None:
            kept = await lifecycle.report_progress(
                session, self._redis, task_id=task_id, worker_id=self.worker_id, progress=percent
            )
            if not kept:
                raise LeaseLost(task_id)

        deadline = asyncio.timeout(task.timeout_seconds)
        try:
            async with deadline:
                result, history = await refresh.run(task, session=session, progress=report)
        except TimeoutError as exc:
            if deadline.expired():
                error = f"exceeded its deadline of {task.timeout_seconds} s"
                return {"status": "timeout", "error": error}
            logger.exception("task %s failed", task_id)
            return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            return None
        except LeaseLost:
            self._stop_reasons.setdefault(task_id, "lost")
            return None
        except Exception as exc:
            logger.exception("task %s failed", task_id)
            return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        return {"status": "completed", "result": result, "history": history}

    async def _stopped(self, task_id: str, reason: StopReason) -> None:
        if reason == "lost":
            logger.warning("task %s stopped: %s lost its lease", task_id, self.worker_id)
            return
        async with engine.session_factory()() as session:
            if reason == "cancel":
                await lifecycle.finish(
                    session,
                    self._redis,
                    task_id=task_id,
                    worker_id=self.worker_id,
                    status="cancelled",
                    error="cancelled while running",
                )
            else:
                await lifecycle.hand_back(
                    session, self._redis, task_id=task_id, worker_id=self.worker_id
                )

    def _stop_task(self, task_id: str, reason: StopReason) -> None:
        running = self._running.get(task_id)
        if running is None or task_id in self._finishing or task_id in self._stop_reasons:
            return
        self._stop_reasons[task_id] = reason
        running.cancel()

    async def _heartbeat(self) -> None:
        self.liveness.tick()
        # Judge only the tasks known before the renewal: one claimed meanwhile is not lost.
        task_ids = list(self._running)
        if not task_ids:
            return
        async with engine.session_factory()() as session:
            held = await lifecycle.heartbeat(session, worker_id=self.worker_id, task_ids=task_ids)
        for task_id in task_ids:
            if task_id not in held:
                self._stop_task(task_id, "lost")
            elif held[task_id]:
                self._stop_task(task_id, "cancel")

    async def _reconcile(self) -> None:
        async with engine.session_factory()() as session:
            await lifecycle.reap_expired(session, self._redis)
            if await queue.try_reconcile_lock(
                self._redis, owner=self.worker_id, ttl_s=self.settings.reconcile_interval_s
            ):
                await lifecycle.requeue_lost(session, self._redis)
                await lifecycle.expire_overdue(
                    session, self._redis, grace_s=self.settings.deadline_grace_s
                )

    async def _announce(self) -> None:
        await queue.announce_worker(self._redis, worker_id=self.worker_id, slots=self.concurrency)

    async def _listen_for_cancellations(self) -> None:
        # Meanwhile the heartbeat still sees cancellations in PostgreSQL, only later.
        outage = logs.Outage(logger, "listening for cancellation signals")
        while not self.stopping.is_set():
            try:
                signals = events.cancellations(self._redis, on_subscribed=outage.recovered)
                async for task_id in signals:
                    if task_id in self._running:
                        logger.info("task %s: cancellation signal received", task_id)
                        self._stop_task(task_id, "cancel")
            except (RedisError, OSError) as exc:
                await self._sleep_unless_stopping(outage.failed(errors.describe(exc)))

    async def _drain(self) -> None:
        if not self._running:
            return
        logger.info(
            "worker %s draining %d tasks for up to %.0f s",
            self.worker_id,
            len(self._running),
            self.settings.worker_drain_timeout_s,
        )
        await asyncio.wait(
            list(self._running.values()), timeout=self.settings.worker_drain_timeout_s
        )
        for task_id in list(self._running):
            self._stop_task(task_id, "hand_back")
        if self._running:
            await asyncio.wait(list(self._running.values()))

    async def _wait_for_free_slot(self) -> None:
        stop = asyncio.create_task(self.stopping.wait())
        await asyncio.wait([stop, *self._running.values()], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    async def _every(self, interval_s: float, step: Callable[[], Awaitable[None]]) -> None:
        # Keeps its pace through an outage: a heartbeat that waited longer would lose leases.
        # It ends on its own flag as well as on cancellation: a cancellation that lands inside
        # a client library's await can be swallowed there, and the loop would then run forever.
        outage = logs.Outage(logger, step.__name__.lstrip("_"))
        while not self._helpers_stop.is_set():
            try:
                await step()
            except (SQLAlchemyError, RedisError, OSError, QueueUnavailable) as exc:
                outage.failed(errors.describe(exc))
            else:
                outage.recovered()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._helpers_stop.wait(), timeout=interval_s)


async def run_worker(*, concurrency: int, metrics_port: int = 0) -> None:
    """The `agent-growth worker` process: the worker, and its metrics and liveness endpoint."""
    worker = Worker(concurrency=concurrency)
    endpoint = None
    if metrics_port:
        endpoint = health.server(worker.liveness, port=metrics_port)
        serving = asyncio.create_task(endpoint.serve())
    try:
        await worker.run()
    finally:
        if endpoint is not None:
            endpoint.should_exit = True
            await serving
        await engine.dispose()
