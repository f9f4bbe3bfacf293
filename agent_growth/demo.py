"""`agent-growth demo`: the whole job on the bundled Wikispeedia corpus, in about a minute.

It plays both sides on one machine: the operator of an installation (a fresh database, the API
and two worker processes) and a client of the REST API (agents, refreshes, a webhook receiver,
a cancellation). The corpus is loaded in two stages, half the documents and then the rest, so
each agent's coverage history shows growth.

The demo works in its own PostgreSQL database (`agent_growth_demo` unless `--database` names
another) and Redis database (1, or `--redis-db`), whose keys of its prefix it deletes first, and
stops every process it started, even when interrupted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from agent_growth import corpus
from agent_growth.local import LocalStack
from agent_growth.webhooks import signing

BUNDLED_CORPUS = Path(__file__).resolve().parents[1] / "data" / "wikispeedia"
DEMO_DATABASE = "agent_growth_demo"
DEMO_REDIS_DB = 1
API_KEY = "demo-key"
WEBHOOK_SECRET = "demo-webhook-secret"

# Pause between a refresh's stages, so that progress can be watched; real refreshes on this
# corpus take well under a second.
STEP_DELAY_S = 0.4

FINISHED = {"completed", "failed", "cancelled", "timeout"}

# Three agents, one of them with a scope of 50 or more nodes.
AGENTS: list[dict[str, Any]] = [
    {
        "name": "Science tutor",
        "taxonomy_node_keys": ["Science", "Mathematics", "IT"],
        "scope_description": "Natural sciences, mathematics and computing",
        "target_docs_per_node": 40,
    },
    {
        "name": "World explorer",
        "taxonomy_node_keys": ["Geography", "History", "Countries", "People"],
        "scope_description": "Places, peoples and the past",
        "target_docs_per_node": 40,
    },
    {
        "name": "Culture guide",
        "taxonomy_node_keys": ["Art", "Music", "Language_and_literature", "Religion"],
        "scope_description": "Arts, music, literature and religion",
        "target_docs_per_node": 30,
    },
]

# Piped output has no terminal width to go by; rich would assume 80 columns and wrap the tables.
console = Console() if sys.stdout.isatty() else Console(width=110)


@dataclass
class WebhookInbox:
    events: list[dict[str, Any]] = field(default_factory=list)
    verified: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextlib.contextmanager
def webhook_receiver(inbox: WebhookInbox) -> Iterator[str]:
    """A local HTTP endpoint that checks each webhook's signature and keeps its event."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            valid = signing.verify_signature(
                WEBHOOK_SECRET, header=self.headers.get("X-Agent-Growth-Signature"), body=body
            )
            with inbox.lock:
                inbox.events.append(json.loads(body))
                inbox.verified += int(valid)
            self.send_response(200 if valid else 401)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/coverage"
    finally:
        server.shutdown()


def load_stage(data_dir: Path, *, fraction: float, stack: LocalStack, title: str) -> None:
    console.rule(title)
    report = corpus.load_corpus(data_dir, database_url=stack.database_url, fraction=fraction)
    console.print(report.summary())


def create_agents(client: httpx.Client) -> list[dict[str, Any]]:
    console.rule("Agents")
    agents = []
    for spec in AGENTS:
        response = client.post("/api/v1/agents", json=spec)
        response.raise_for_status()
        agent = response.json()
        agents.append(agent)
        console.print(
            f"{agent['name']}: {len(agent['taxonomy_node_ids'])} named nodes"
            f" ({', '.join(spec['taxonomy_node_keys'])}), target {spec['target_docs_per_node']}"
            " documents per node"
        )
    return agents


def submit(client: httpx.Client, agent: dict[str, Any], **body: Any) -> dict[str, Any]:
    response = client.post(f"/api/v1/agents/{agent['id']}/coverage/refresh", json=body)
    response.raise_for_status()
    return response.json()


def short_id(task_id: str) -> str:
    """The tail of a task id: enough to tell tasks apart in a narrow table."""
    return task_id[-12:]


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def status_table(rows: list[tuple[str, dict[str, Any]]]) -> Table:
    table = Table(expand=False)
    for column in ("agent", "task …", "priority", "status", "progress", "queue", "attempts"):
        table.add_column(column)
    for name, task in rows:
        position = task.get("queue_position")
        table.add_row(
            name,
            short_id(task["task_id"]),
            task["priority"],
            task["status"],
            f"{task['progress_percentage']:>3d} %",
            str(position) if position else "",
            str(task["attempts"]),
        )
    return table


Rows = list[tuple[str, dict[str, Any]]]


def polls(client: httpx.Client, tasks: Rows) -> Iterator[Rows]:
    """Every task's status, read again and again until all have finished."""
    deadline = time.monotonic() + 60
    yield tasks
    while not all(task["status"] in FINISHED for _, task in tasks):
        if time.monotonic() > deadline:
            raise SystemExit("refreshes did not finish within 60 s")
        time.sleep(0.15)
        tasks = [
            (
                name,
                client.get(
                    f"/api/v1/agents/{task['agent_id']}/coverage/status/{task['task_id']}"
                ).json(),
            )
            for name, task in tasks
        ]
        yield tasks


def watch(client: httpx.Client, tasks: Rows) -> None:
    """Follow the tasks until all have finished: a live table on a terminal, else a line for
    each change (a redrawn table would show only its last state in a file or a pipe)."""
    if console.is_terminal:
        with Live(status_table(tasks), console=console, refresh_per_second=8) as live:
            for current in polls(client, tasks):
                live.update(status_table(current))
        console.print()
        return

    seen: dict[str, tuple[object, ...]] = {}
    current = tasks
    for current in polls(client, tasks):
        for name, task in current:
            position = task.get("queue_position")
            state = (task["status"], task["progress_percentage"], position)
            if seen.get(name) != state:
                seen[name] = state
                place = f", queue position {position}" if position else ""
                console.print(f"  {name}: {task['status']} {task['progress_percentage']} %{place}")
    console.print(status_table(current))


def refresh_all(
    client: httpx.Client, agents: list[dict[str, Any]], *, webhook_url: str | None, title: str
) -> None:
    console.rule(title)
    tasks = []
    for index, agent in enumerate(agents):
        body: dict[str, Any] = {"priority": "high" if index == 0 else "medium"}
        if index == 0 and webhook_url:
            body["webhook_url"] = webhook_url
        tasks.append((agent["name"], submit(client, agent, **body)))

    if webhook_url:
        # One more, queued behind the others, then cancelled before any worker reaches it.
        extra = submit(client, agents[-1], priority="low")
        client.delete(f"/api/v1/agents/tasks/{extra['task_id']}").raise_for_status()
        tasks.append((f"{agents[-1]['name']} (cancelled)", extra))
    watch(client, tasks)


def report(client: httpx.Client, *, agents: list[dict[str, Any]], inbox: WebhookInbox) -> None:
    console.rule("Coverage")
    for agent in agents:
        coverage = client.get(f"/api/v1/agents/{agent['id']}/coverage").json()
        history = client.get(f"/api/v1/agents/{agent['id']}/coverage/history").json()
        console.print(
            f"[bold]{agent['name']}[/bold]: {coverage['overall_coverage']:.2f} % over"
            f" {len(coverage['node_coverage'])} nodes, {coverage['total_documents']} documents,"
            f" {coverage['total_chunks']} chunks; {plural(len(coverage['gaps']), 'node')} below"
            f" half {'its' if len(coverage['gaps']) == 1 else 'their'} target"
        )
        growth = " -> ".join(
            f"{entry['overall_coverage']:.2f} %" for entry in reversed(history["history"])
        )
        console.print(f"  history ({history['total_entries']} refreshes): {growth}")
        if not coverage["gaps"]:
            console.print("  no node is below half its target")
            continue
        gaps = Table("largest gaps", "documents", "target", "missing", expand=False)
        for gap in coverage["gaps"][:5]:
            gaps.add_row(
                gap["path"], str(gap["documents"]), str(gap["target"]), str(gap["missing_docs"])
            )
        console.print(gaps)

    console.rule("Webhooks")
    with inbox.lock:
        for event in inbox.events:
            console.print(
                f"{event['status']:<10} task …{short_id(event['task_id'])},"
                f" event id {event['event_id']}"
            )
        console.print(f"{len(inbox.events)} received, {inbox.verified} with a valid signature")


def main(
    *,
    data_dir: Path | None = None,
    database: str = DEMO_DATABASE,
    redis_db: int = DEMO_REDIS_DB,
) -> None:
    started = time.monotonic()
    data_dir = data_dir or BUNDLED_CORPUS
    # The demo's own output tells the story; library chatter (migrations, requests) would bury it.
    logging.getLogger().setLevel(logging.WARNING)
    stack = LocalStack(
        database=database,
        redis_db=redis_db,
        api_key=API_KEY,
        extra_env={
            "AGENT_GROWTH_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "AGENT_GROWTH_WEBHOOK_ALLOW_PRIVATE": "true",
            "AGENT_GROWTH_WORKER_STEP_DELAY_S": str(STEP_DELAY_S),
            "AGENT_GROWTH_LOG_LEVEL": "WARNING",
        },
    )
    console.rule("Agent Growth demo")
    console.print(
        f"database {database}, Redis db {redis_db}, corpus {data_dir}; refresh stages"
        f" are slowed by {STEP_DELAY_S} s so their progress can be watched"
    )
    stack.reset()
    load_stage(data_dir, fraction=0.5, stack=stack, title="Corpus, stage 1: half the documents")

    inbox = WebhookInbox()
    with webhook_receiver(inbox) as webhook_url, stack.running(workers=2) as client:
        agents = create_agents(client)
        refresh_all(client, agents, webhook_url=webhook_url, title="Refresh after stage 1")

        load_stage(data_dir, fraction=1.0, stack=stack, title="Corpus, stage 2: all documents")
        refresh_all(client, agents, webhook_url=None, title="Refresh after stage 2")

        deadline = time.monotonic() + 10
        while not inbox.events and time.monotonic() < deadline:
            time.sleep(0.1)
        report(client, agents=agents, inbox=inbox)

    console.rule(f"Done in {time.monotonic() - started:.0f} s; every process it started is stopped")
