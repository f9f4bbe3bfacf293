"""What the operator costs the Kubernetes API server, and how soon the status follows the task.

Runs the real operator in this process against the emulated API server of the operator tests
(`tests/operator/emulator.py`, on kmock), with the real API and two worker processes of
`agent_growth.local.LocalStack` behind it, on the bundled corpus. It applies a batch of
CoverageRefresh resources at once, as `kubectl apply -f dir/` would, waits until every one
shows Completed, and prints:

- API-server writes per refresh, by kind: status patches, events, kopf's own patches of the
  resource (finalizer, label, bookkeeping annotations), deletions;
- task events published in Redis against status patches written (how much the mirror
  coalesces);
- time from the resource's creation to `Completed` in its status: p50, p99, max.

Nothing is asserted. It needs the test extras (kmock): `.venv/bin/python bench/bench_operator.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import statistics
import sys
import time
from pathlib import Path

import kmock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the emulator lives with the operator tests

from agent_growth import corpus, kube  # noqa: E402
from agent_growth.local import LocalStack  # noqa: E402
from agent_growth.operator import main as operator_main  # noqa: E402
from agent_growth.settings import get_settings  # noqa: E402
from agent_growth.tasks import events, queue  # noqa: E402
from tests.operator import crd_schema  # noqa: E402
from tests.operator.emulator import KubernetesServer, kubeconfig  # noqa: E402

API_KEY = "bench-key"
NAMESPACE = "bench"
SCOPE = ["Geography", "History", "Countries", "People"]
PLURAL_PATH = f"/apis/{kube.GROUP}/{kube.VERSION}/namespaces/{NAMESPACE}/{kube.PLURAL}"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def write_kind(request: object) -> str:
    plural = request.resource.plural  # type: ignore[attr-defined]
    if plural == "events":
        return "event"
    if plural != kube.PLURAL:
        return plural
    if request.subresource == "status":  # type: ignore[attr-defined]
        return "status patch"
    if request.method.value == "DELETE":  # type: ignore[attr-defined]
        return "delete"
    if request.method.value == "POST":  # type: ignore[attr-defined]
        return "create (the user's)"
    return "kopf's patch of the resource"


async def measure(k8s: KubernetesServer, agent_id: str, *, count: int) -> None:
    published = 0
    redis = queue.connect()

    async def listen() -> None:
        nonlocal published
        async for _ in events.subscribe(redis):
            published += 1

    listener = asyncio.create_task(listen())
    stop, ready = asyncio.Event(), asyncio.Event()
    operator = asyncio.create_task(
        operator_main.operate(
            namespaces=(NAMESPACE,), standalone=True, stop_flag=stop, ready_flag=ready
        )
    )
    await asyncio.wait_for(ready.wait(), timeout=30)
    writes_before = len(k8s.writes())

    created_at: dict[str, float] = {}
    for index in range(count):
        name = f"refresh-{index:03d}"
        body = {
            "apiVersion": kube.API_VERSION,
            "kind": kube.KIND,
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"agentId": agent_id, "ttlSecondsAfterFinished": 3600},
        }
        response = await k8s.post(PLURAL_PATH, json=body)
        response.raise_for_status()
        created_at[name] = time.perf_counter()

    completed_after: dict[str, float] = {}
    deadline = time.monotonic() + 300
    while len(completed_after) < count and time.monotonic() < deadline:
        for name in created_at.keys() - completed_after.keys():
            obj = k8s.read(f"{kube.GROUP}/{kube.VERSION}/{kube.PLURAL}", NAMESPACE, name)
            if obj and (obj.get("status") or {}).get("phase") == "Completed":
                completed_after[name] = time.perf_counter() - created_at[name]
        await asyncio.sleep(0.02)
    await asyncio.sleep(2.0)  # anything still to be written is written by now

    stop.set()
    await asyncio.wait_for(operator, timeout=30)
    listener.cancel()
    await redis.aclose()

    writes = k8s.writes()[writes_before:]
    by_kind = collections.Counter(write_kind(request) for request in writes)
    done = len(completed_after)
    print(f"{done} of {count} resources Completed; API-server requests that wrote something:")
    for kind, number in sorted(by_kind.items(), key=lambda item: -item[1]):
        print(f"  {kind:<30} {number:>5}  = {number / count:.2f} per refresh")
    own = sum(n for kind, n in by_kind.items() if kind != "create (the user's)")
    print(f"  {'the operator in all':<30} {own:>5}  = {own / count:.2f} per refresh")
    status_writes = by_kind["status patch"]
    print(
        f"task events published in Redis: {published} ({published / count:.1f} per refresh);"
        f" status patches: {status_writes} ({status_writes / max(published, 1):.2f} per event)"
    )
    if completed_after:
        seconds = list(completed_after.values())
        print(
            f"creation to Completed in the status: p50 {statistics.median(seconds):.2f} s,"
            f" p99 {percentile(seconds, 0.99):.2f} s, max {max(seconds):.2f} s"
        )


async def run_with_emulator(agent_id: str, *, count: int, workdir: Path) -> None:
    async with KubernetesServer() as k8s, kmock.Server(k8s):
        k8s.namespaces.add(NAMESPACE)
        k8s.install_core()
        k8s.install_crd_file(crd_schema.CRD_PATH)
        config = workdir / "kubeconfig"
        config.write_text(kubeconfig(str(k8s.url).rstrip("/")))
        os.environ["KUBECONFIG"] = str(config)
        try:
            await measure(k8s, agent_id, count=count)
        finally:
            await kube.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=60)
    parser.add_argument(
        "--step-delay-s",
        type=float,
        default=0.3,
        help="slow each refresh's steps, so that tasks report progress several times",
    )
    args = parser.parse_args()

    stack = LocalStack(
        database="agent_growth_bench_operator",
        redis_db=4,
        api_key=API_KEY,
        extra_env={
            "AGENT_GROWTH_WORKER_STEP_DELAY_S": str(args.step_delay_s),
            "AGENT_GROWTH_LOG_LEVEL": "WARNING",
        },
    )
    stack.reset()
    bundled = ROOT / "data" / "wikispeedia"
    corpus.load_corpus(bundled, database_url=stack.database_url, progress=False)
    os.environ.update(stack.env)
    os.environ.pop("KUBERNETES_SERVICE_HOST", None)
    get_settings.cache_clear()
    print(
        f"{args.resources} CoverageRefresh resources applied at once; 2 workers x 2 slots;"
        f" step delay {args.step_delay_s} s; status written at most every"
        f" {get_settings().operator_status_interval_s} s per resource"
    )

    with stack.running(workers=2, concurrency=2) as client:
        agent = {"name": "bench", "taxonomy_node_keys": SCOPE}
        response = client.post("/api/v1/agents", json=agent)
        response.raise_for_status()
        workdir = ROOT / ".state"
        workdir.mkdir(exist_ok=True)
        asyncio.run(run_with_emulator(response.json()["id"], count=args.resources, workdir=workdir))


if __name__ == "__main__":
    main()
