"""Prometheus metrics of every role, defined once so that names and labels cannot drift.

The API serves them at `/metrics`; workers and the operator on their own ports. The API fills
the queue gauges from Redis at each scrape, so every API replica reports the same queue.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "agent_growth_http_requests_total",
    "API requests by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "agent_growth_http_request_duration_seconds",
    "API request latency by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TASKS_FINISHED = Counter(
    "agent_growth_tasks_finished_total",
    "Tasks that reached a terminal status, by status.",
    ["status"],
)
TASK_DURATION = Histogram(
    "agent_growth_task_duration_seconds",
    "Time from a worker's claim of a task to its terminal status.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
TASKS_RUNNING = Gauge(
    "agent_growth_worker_tasks_running",
    "Tasks this worker is running now.",
)
TASKS_RECLAIMED = Counter(
    "agent_growth_tasks_reclaimed_total",
    "Running tasks taken back after their worker stopped heartbeating.",
)
QUEUE_DEPTH = Gauge(
    "agent_growth_queue_depth",
    "Tasks waiting in the Redis queue, by priority.",
    ["priority"],
)
QUEUE_OLDEST_AGE = Gauge(
    "agent_growth_queue_oldest_age_seconds",
    "Age of the oldest task waiting in the queue, by priority.",
    ["priority"],
)
WEBHOOK_DELIVERIES = Counter(
    "agent_growth_webhook_deliveries_total",
    "Webhook delivery attempts by outcome (delivered, retry, failed).",
    ["outcome"],
)
OPERATOR_RECONCILES = Counter(
    "agent_growth_operator_reconciles_total",
    "Operator reconciliations of CoverageRefresh resources, by outcome.",
    ["outcome"],
)
OPERATOR_API_WRITES = Counter(
    "agent_growth_operator_api_writes_total",
    "Writes the operator's own code sent to the Kubernetes API server, by kind (status, event,"
    " delete, peering); kopf's bookkeeping patches of each resource (finalizer, label,"
    " annotations: three per refresh) come on top.",
    ["kind"],
)
