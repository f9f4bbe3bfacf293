"""Redis pub/sub signals: task changes for watchers, and cancellation for workers.

Signals only hurry things along. Every fact they carry is also in PostgreSQL, which workers and
the operator read on their own schedule, so a signal lost while nobody listened costs latency,
not correctness.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from agent_growth.tasks import queue

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskEvent:
    task_id: str
    status: str
    progress: int


async def publish(redis: aioredis.Redis, event: TaskEvent) -> None:
    try:
        await redis.publish(queue.events_channel(), json.dumps(asdict(event)))
    except (RedisError, OSError) as exc:
        logger.warning("could not publish the change of task %s: %s", event.task_id, exc)


async def subscribe(
    redis: aioredis.Redis, *, on_subscribed: Callable[[], None] | None = None
) -> AsyncIterator[TaskEvent]:
    """Every task change published from now on, until the caller stops iterating."""
    async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
        await pubsub.subscribe(queue.events_channel())
        if on_subscribed is not None:
            on_subscribed()
        async for message in pubsub.listen():
            try:
                yield TaskEvent(**json.loads(message["data"]))
            except (ValueError, TypeError) as exc:
                # One bad message must not end the subscription of every watcher.
                logger.warning("ignored a malformed task event %r: %s", message["data"], exc)


async def signal_cancel(redis: aioredis.Redis, task_id: str) -> None:
    try:
        await redis.publish(queue.cancel_channel(), task_id)
    except (RedisError, OSError) as exc:
        # The worker also sees the request in PostgreSQL at its next heartbeat.
        logger.warning("could not signal cancellation of task %s: %s", task_id, exc)


async def cancellations(
    redis: aioredis.Redis, *, on_subscribed: Callable[[], None] | None = None
) -> AsyncIterator[str]:
    """Task ids whose cancellation was requested, as the requests are made."""
    async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
        await pubsub.subscribe(queue.cancel_channel())
        if on_subscribed is not None:
            on_subscribed()
        async for message in pubsub.listen():
            data = message["data"]
            yield data.decode() if isinstance(data, bytes) else data
