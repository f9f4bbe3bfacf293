"""Queue operations against real Redis as the queue grows: position lookups, pushes, pops.

`queue_position` is three ZCARDs and a ZRANK in one round trip, O(log n) in Redis; this prints
its cost at growing queue sizes so that a regression to a scan would show. Uses Redis
database 3, which it empties. Nothing is asserted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import statistics
import time

from agent_growth.tasks import queue

REDIS_URL = "redis://127.0.0.1:6379/3"
SIZES = (1_000, 10_000, 100_000, 1_000_000)
LOOKUPS = 2_000


async def fill(redis, size: int) -> list[tuple[str, str]]:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    entries = [
        (
            f"task-{i}",
            random.choice(("high", "medium", "low")),
            start + dt.timedelta(microseconds=i),
        )
        for i in range(size)
    ]
    for offset in range(0, size, 10_000):
        async with redis.pipeline(transaction=False) as pipe:
            for task_id, priority, created_at in entries[offset : offset + 10_000]:
                pipe.zadd(queue.queue_key(priority), {task_id: queue.score_for(created_at)})
            await pipe.execute()
    return [(task_id, priority) for task_id, priority, _ in entries]


async def main() -> None:
    redis = queue.connect(REDIS_URL)
    print(f"{'queued':>10}  {'position p50':>13}  {'p99':>8}  {'push':>8}  {'pop':>8}")
    for size in SIZES:
        await redis.flushdb()
        entries = await fill(redis, size)

        timings = []
        for task_id, priority in random.sample(entries, min(LOOKUPS, size)):
            started = time.perf_counter()
            await queue.position(redis, task_id=task_id, priority=priority)
            timings.append((time.perf_counter() - started) * 1e6)
        timings.sort()
        p99_us = timings[int(0.99 * (len(timings) - 1))]

        started = time.perf_counter()
        for i in range(LOOKUPS):
            await queue.push(
                redis, task_id=f"extra-{i}", priority="medium", created_at=dt.datetime.now(dt.UTC)
            )
        push_us = (time.perf_counter() - started) / LOOKUPS * 1e6

        started = time.perf_counter()
        for _ in range(LOOKUPS):
            await queue.pop(redis)
        pop_us = (time.perf_counter() - started) / LOOKUPS * 1e6

        print(
            f"{size:>10,}  {statistics.median(timings):>10.0f} µs  {p99_us:>5.0f} µs"
            f"  {push_us:>5.0f} µs  {pop_us:>5.0f} µs"
        )
    await redis.flushdb()
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
