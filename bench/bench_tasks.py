"""End-to-end task figures on a local stack: submission latency, throughput, cancellation.

Runs the real API and worker processes (`agent_growth.local.LocalStack`) on the bundled corpus
and prints:

- 100 concurrent refresh submissions: status codes, p50 / p99 / max latency, wall time;
- tasks per second end to end with two worker processes (submission to last completion);
- cancel-to-stopped latency: from the DELETE of a running task to its `cancelled` status.

Nothing is asserted; run it with `.venv/bin/python bench/bench_tasks.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import time
from pathlib import Path

import httpx
import psycopg

from agent_growth import corpus
from agent_growth.db import engine
from agent_growth.local import LocalStack

BUNDLED_CORPUS = Path(__file__).resolve().parents[1] / "data" / "wikispeedia"
API_KEY = "bench-key"
SCOPE = ["Geography", "History", "Countries", "People"]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def make_agent(client: httpx.Client) -> str:
    response = client.post("/api/v1/agents", json={"name": "bench", "taxonomy_node_keys": SCOPE})
    response.raise_for_status()
    return str(response.json()["id"])


async def concurrent_submissions(stack: LocalStack, agent_id: str, *, count: int) -> list[str]:
    async with httpx.AsyncClient(
        base_url=stack.base_url, headers={"X-API-Key": API_KEY}, timeout=30
    ) as client:

        async def one() -> tuple[int, float, str]:
            started = time.perf_counter()
            response = await client.post(f"/api/v1/agents/{agent_id}/coverage/refresh", json={})
            return response.status_code, time.perf_counter() - started, response.json()["task_id"]

        started = time.perf_counter()
        results = await asyncio.gather(*(one() for _ in range(count)))
        wall_s = time.perf_counter() - started

    codes: dict[int, int] = {}
    for code, _, _ in results:
        codes[code] = codes.get(code, 0) + 1
    latencies_ms = [latency * 1000 for _, latency, _ in results]
    print(f"{count} concurrent submissions: status codes {codes}, wall {wall_s:.2f} s")
    print(
        f"  latency p50 {percentile(latencies_ms, 0.5):.1f} ms, p99"
        f" {percentile(latencies_ms, 0.99):.1f} ms, max {max(latencies_ms):.1f} ms"
    )
    return [task_id for _, _, task_id in results]


def wait_all_finished(stack: LocalStack, task_ids: list[str], *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(engine.psycopg_dsn(stack.database_url)) as conn:
        while time.monotonic() < deadline:
            (left,) = conn.execute(
                "SELECT count(*) FROM background_tasks WHERE task_id = ANY(%s)"
                " AND status IN ('pending', 'running')",
                (task_ids,),
            ).fetchone()
            conn.commit()
            if left == 0:
                return
            time.sleep(0.05)
    raise RuntimeError(f"tasks still unfinished after {timeout_s} s")


def throughput(stack: LocalStack, task_ids: list[str]) -> None:
    wait_all_finished(stack, task_ids, timeout_s=300)
    with psycopg.connect(engine.psycopg_dsn(stack.database_url)) as conn:
        first, last, completed, runs = conn.execute(
            "SELECT min(created_at), max(completed_at), count(*) FILTER (WHERE status ="
            " 'completed'), avg(extract(epoch FROM completed_at - started_at))"
            " FROM background_tasks WHERE task_id = ANY(%s)",
            (task_ids,),
        ).fetchone()
    span_s = (last - first).total_seconds()
    print(
        f"end to end with two workers: {completed} of {len(task_ids)} completed in"
        f" {span_s:.2f} s = {completed / span_s:.1f} tasks/s (mean run {runs * 1000:.0f} ms)"
    )


def cancel_latency(stack: LocalStack, client: httpx.Client, agent_id: str, *, samples: int) -> None:
    latencies_ms = []
    with psycopg.connect(engine.psycopg_dsn(stack.database_url), autocommit=True) as conn:
        for _ in range(samples):
            task = client.post(f"/api/v1/agents/{agent_id}/coverage/refresh", json={}).json()
            status_url = f"/api/v1/agents/{agent_id}/coverage/status/{task['task_id']}"
            while client.get(status_url).json()["status"] != "running":
                time.sleep(0.01)
            requested_at = dt.datetime.now(dt.UTC)
            client.delete(f"/api/v1/agents/tasks/{task['task_id']}").raise_for_status()
            while True:
                status, completed_at = conn.execute(
                    "SELECT status, completed_at FROM background_tasks WHERE task_id = %s",
                    (task["task_id"],),
                ).fetchone()
                if status != "running":
                    break
                time.sleep(0.005)
            latencies_ms.append((completed_at - requested_at).total_seconds() * 1000)
    print(
        f"cancel to stopped ({samples} running tasks): p50"
        f" {statistics.median(latencies_ms):.1f} ms, max {max(latencies_ms):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=BUNDLED_CORPUS)
    parser.add_argument("--submissions", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--cancel-samples", type=int, default=10)
    args = parser.parse_args()

    stack = LocalStack(database="agent_growth_bench_tasks", redis_db=2, api_key=API_KEY)
    stack.reset()
    corpus.load_corpus(args.corpus, database_url=stack.database_url, progress=False)

    with stack.running(workers=2, concurrency=2) as client:
        agent_id = make_agent(client)
        submitted = asyncio.run(concurrent_submissions(stack, agent_id, count=args.submissions))
        wait_all_finished(stack, submitted, timeout_s=300)
        task_ids = asyncio.run(concurrent_submissions(stack, agent_id, count=args.tasks))
        throughput(stack, task_ids)

    slow = LocalStack(
        database=stack.database,
        redis_db=stack.redis_db,
        api_key=API_KEY,
        extra_env={"AGENT_GROWTH_WORKER_STEP_DELAY_S": "30"},
    )
    with slow.running(workers=1, concurrency=1) as client:
        cancel_latency(slow, client, make_agent(client), samples=args.cancel_samples)


if __name__ == "__main__":
    main()
