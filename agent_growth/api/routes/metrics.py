"""Prometheus metrics of the API: request counts and latencies, and the queue as Redis holds it.

Requests are counted by route template (`/api/v1/agents/{agent_id}`), not by concrete path, so
the number of series stays bounded; a path that matched no route counts as `unmatched`. The
queue gauges are read from Redis at each scrape, so any API replica reports the same queue; the
chart's alerts and the worker autoscaler read them from the API's series.

`/metrics` needs no API key, like the health probes: scrapers rarely carry one, and it reveals
counts only. Keep it off the public ingress.
"""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_growth import metrics
from agent_growth.api.deps import RedisDep
from agent_growth.tasks import queue

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


class RequestMetrics:
    """ASGI middleware recording every HTTP request once it has been answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        status_code = 500  # What the client gets if the app raises before answering.

        async def send_and_note(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # Routing stores the matched route in the scope; an unmatched path has none.
            template = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            metrics.HTTP_REQUESTS.labels(method, template, str(status_code)).inc()
            metrics.HTTP_DURATION.labels(method, template).observe(time.perf_counter() - started)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(redis: RedisDep) -> Response:
    try:
        depths = await queue.depth(redis)
        ages_s = await queue.oldest_age_s(redis)
    except (RedisError, OSError) as exc:
        # The gauges keep their last values; the readiness probe reports the outage.
        logger.warning("queue gauges not refreshed, Redis unavailable: %s", exc)
    else:
        for priority, depth in depths.items():
            metrics.QUEUE_DEPTH.labels(priority).set(depth)
        for priority, age_s in ages_s.items():
            metrics.QUEUE_OLDEST_AGE.labels(priority).set(age_s)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
