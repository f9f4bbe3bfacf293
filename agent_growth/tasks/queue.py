"""The Redis side of the task queue: three sorted sets, one per priority, and a few signals.

Each priority has its own sorted set `{prefix}:queue:{priority}`, scored by the task's creation
time in microseconds. Taking work pops the lowest score of the highest non-empty priority, which
gives strict priority and FIFO within one priority. A task's queue position is the size of the
sets ahead of it plus its rank in its own set: ZCARDs and one ZRANK, O(log n), with no scan.

Creation times (about 1.8e15 microseconds) stay below 2**53, so a double-precision score holds
them exactly.

Redis is only a mirror: PostgreSQL decides whether a task runs (see `lifecycle.claim`), so an
entry that is lost, duplicated or stale costs at most a wasted pop, never a double run.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from agent_growth.db.models import PRIORITIES
from agent_growth.errors import QueueUnavailable
from agent_growth.settings import get_settings

# How often a worker announces that it is alive, and with how many slots: the capacity that
# queue ETAs are reckoned with. One ZADD a second per worker costs Redis nothing.
ANNOUNCE_INTERVAL_S: Final = 1.0

# Workers silent for this long (three announcements missed) no longer count towards capacity,
# so ETAs stop counting a killed worker's slots within a few seconds.
WORKER_SEEN_WINDOW_S: Final = 3 * ANNOUNCE_INTERVAL_S + 0.5

# A command that takes longer than this means Redis is in trouble; fail rather than hang. It
# stays above IDLE_WAIT_S-style blocking reads (BLPOP) that workers issue.
SOCKET_TIMEOUT_S: Final = 5.0

# Redis on the network answers a connect within milliseconds; two seconds is an outage.
CONNECT_TIMEOUT_S: Final = 2.0

# An idle pooled connection is pinged before reuse after this long, so a Redis restart costs
# no failed request.
HEALTH_CHECK_INTERVAL_S: Final = 10

# Connections one process keeps to Redis; far more than one process's concurrent requests need.
MAX_CONNECTIONS: Final = 64

# How long a request waits for a free pooled connection before Redis counts as unavailable.
POOL_WAIT_S: Final = 5.0

# Wake-up tokens are capped: a burst of submissions needs only as many as there are idle workers.
MAX_WAKE_TOKENS: Final = 64

# Pops the oldest task of the highest non-empty priority. KEYS are the sets, highest first.
_POP_SCRIPT: Final = """
for i, key in ipairs(KEYS) do
  local popped = redis.call('ZPOPMIN', key)
  if popped[1] then
    return {popped[1], popped[2], ARGV[i]}
  end
end
return nil
"""

# Removes a task from whichever priority set holds it.
_REMOVE_SCRIPT: Final = """
local removed = 0
for _, key in ipairs(KEYS) do
  removed = removed + redis.call('ZREM', key, ARGV[1])
end
return removed
"""


def _key(*parts: str) -> str:
    return ":".join((get_settings().redis_prefix, *parts))


def queue_key(priority: str) -> str:
    return _key("queue", priority)


def wake_key() -> str:
    return _key("queue", "wake")


def workers_key() -> str:
    return _key("workers")


def reconcile_lock_key() -> str:
    return _key("reconcile", "lock")


def cancel_channel() -> str:
    return _key("signals", "cancel")


def events_channel() -> str:
    return _key("signals", "events")


def connect(url: str | None = None) -> aioredis.Redis:
    """A client with short timeouts, so that a Redis outage fails requests instead of hanging.

    The pool blocks for a free connection instead of failing: a burst of requests waits its
    turn rather than being told Redis is unavailable.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url or get_settings().redis_url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
    )
    return aioredis.Redis(connection_pool=pool)


def score_for(created_at: dt.datetime) -> int:
    return int(created_at.timestamp() * 1_000_000)


async def ping(redis: aioredis.Redis) -> None:
    try:
        await redis.ping()
    except (RedisError, OSError) as exc:
        raise QueueUnavailable(f"Redis cannot be reached: {exc}") from exc


async def push(
    redis: aioredis.Redis, *, task_id: str, priority: str, created_at: dt.datetime
) -> None:
    """Queue a task; a task already queued keeps its place (ZADD NX)."""
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.zadd(queue_key(priority), {task_id: score_for(created_at)}, nx=True)
            pipe.lpush(wake_key(), "1")
            pipe.ltrim(wake_key(), 0, MAX_WAKE_TOKENS - 1)
            await pipe.execute()
    except (RedisError, OSError) as exc:
        raise QueueUnavailable(f"could not queue task {task_id}: {exc}") from exc


async def push_many(redis: aioredis.Redis, entries: list[tuple[str, str, dt.datetime]]) -> int:
    """Queue (task_id, priority, created_at) entries not queued yet; returns how many were added."""
    if not entries:
        return 0
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for task_id, priority, created_at in entries:
                pipe.zadd(queue_key(priority), {task_id: score_for(created_at)}, nx=True)
            added = sum(int(reply) for reply in await pipe.execute())
        if added:
            await redis.lpush(wake_key(), *(["1"] * min(added, MAX_WAKE_TOKENS)))
            await redis.ltrim(wake_key(), 0, MAX_WAKE_TOKENS - 1)
    except (RedisError, OSError) as exc:
        raise QueueUnavailable(f"could not re-queue {len(entries)} tasks: {exc}") from exc
    return added


async def pop(redis: aioredis.Redis) -> tuple[str, str, float] | None:
    """Take the next task: (task_id, priority, score), or None when every set is empty."""
    keys = [queue_key(priority) for priority in PRIORITIES]
    reply = await redis.eval(_POP_SCRIPT, len(keys), *keys, *PRIORITIES)
    if not reply:
        return None
    task_id, score, priority = reply
    return _text(task_id), _text(priority), float(score)


async def put_back(redis: aioredis.Redis, *, task_id: str, priority: str, score: float) -> None:
    """Return a popped task to its old place, when the claim could not be decided."""
    await redis.zadd(queue_key(priority), {task_id: score}, nx=True)


async def remove(redis: aioredis.Redis, task_id: str) -> bool:
    keys = [queue_key(priority) for priority in PRIORITIES]
    try:
        return bool(await redis.eval(_REMOVE_SCRIPT, len(keys), *keys, task_id))
    except (RedisError, OSError) as exc:
        raise QueueUnavailable(f"could not remove task {task_id} from the queue: {exc}") from exc


async def position(redis: aioredis.Redis, *, task_id: str, priority: str) -> int | None:
    """1 for the next task to run; None when the task is not queued."""
    return (await positions(redis, [(task_id, priority)])).get(task_id)


async def positions(redis: aioredis.Redis, tasks: list[tuple[str, str]]) -> dict[str, int]:
    """Positions of the queued ones among (task_id, priority) pairs, in one round trip.

    The sizes of the sets ahead plus the rank in the task's own set, read in one MULTI so that
    every position comes from the same moment.
    """
    if not tasks:
        return {}
    async with redis.pipeline(transaction=True) as pipe:
        for priority in PRIORITIES:
            pipe.zcard(queue_key(priority))
        for task_id, priority in tasks:
            pipe.zrank(queue_key(priority), task_id)
        replies = await pipe.execute()

    sizes = dict(zip(PRIORITIES, replies[: len(PRIORITIES)], strict=True))
    found: dict[str, int] = {}
    for (task_id, priority), rank in zip(tasks, replies[len(PRIORITIES) :], strict=True):
        if rank is not None:
            ahead = PRIORITIES[: PRIORITIES.index(priority)]
            found[task_id] = sum(sizes[higher] for higher in ahead) + rank + 1
    return found


async def depth(redis: aioredis.Redis) -> dict[str, int]:
    async with redis.pipeline(transaction=False) as pipe:
        for priority in PRIORITIES:
            pipe.zcard(queue_key(priority))
        sizes = await pipe.execute()
    return dict(zip(PRIORITIES, sizes, strict=True))


async def oldest_age_s(redis: aioredis.Redis) -> dict[str, float]:
    """Age of the oldest queued task per priority; 0 for an empty priority."""
    async with redis.pipeline(transaction=False) as pipe:
        for priority in PRIORITIES:
            pipe.zrange(queue_key(priority), 0, 0, withscores=True)
        replies = await pipe.execute()
    now_us = time.time() * 1_000_000
    return {
        priority: max(0.0, (now_us - reply[0][1]) / 1_000_000) if reply else 0.0
        for priority, reply in zip(PRIORITIES, replies, strict=True)
    }


async def wait_for_work(redis: aioredis.Redis, *, timeout_s: float) -> None:
    """Block until a submission wakes this worker or the timeout passes."""
    await redis.blpop([wake_key()], timeout=timeout_s)


async def announce_worker(redis: aioredis.Redis, *, worker_id: str, slots: int) -> None:
    """Mark this worker alive, and forget the workers silent for longer than the window."""
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(workers_key(), {f"{worker_id}|{slots}": now})
        pipe.zremrangebyscore(workers_key(), "-inf", now - WORKER_SEEN_WINDOW_S)
        await pipe.execute()


async def retire_worker(redis: aioredis.Redis, *, worker_id: str, slots: int) -> None:
    await redis.zrem(workers_key(), f"{worker_id}|{slots}")


async def worker_capacity(redis: aioredis.Redis) -> int:
    """Task slots of the workers seen recently; the basis of queue ETAs. Reads only."""
    cutoff = time.time() - WORKER_SEEN_WINDOW_S
    members = await redis.zrangebyscore(workers_key(), cutoff, "+inf")
    slots = [int(_text(member).rsplit("|", 1)[1]) for member in members]  # type: ignore[arg-type]
    return sum(slots)


async def try_reconcile_lock(redis: aioredis.Redis, *, owner: str, ttl_s: float) -> bool:
    """Only one worker at a time reconciles Redis with PostgreSQL; the lock expires on its own."""
    return bool(await redis.set(reconcile_lock_key(), owner, nx=True, px=int(ttl_s * 1000)))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
