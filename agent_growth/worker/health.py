"""The worker's small HTTP side: Prometheus `/metrics` and a `/healthz` for liveness probes.

Liveness means the event loop still turns: the heartbeat loop stamps `last_tick`, and `/healthz`
fails once no stamp has come for several heartbeat intervals, which is what a wedged worker looks
like from outside.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# A worker whose loop has not ticked for this many heartbeat intervals is reported dead.
STALE_AFTER_INTERVALS = 20


class Liveness:
    def __init__(self, *, interval_s: float) -> None:
        self.interval_s = interval_s
        self.last_tick = time.monotonic()

    def tick(self) -> None:
        self.last_tick = time.monotonic()

    @property
    def silent_for_s(self) -> float:
        return time.monotonic() - self.last_tick

    @property
    def alive(self) -> bool:
        return self.silent_for_s < self.interval_s * STALE_AFTER_INTERVALS


def build_app(liveness: Liveness) -> Starlette:
    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        body = {"alive": liveness.alive, "silent_for_s": round(liveness.silent_for_s, 3)}
        return JSONResponse(body, status_code=200 if liveness.alive else 503)

    return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz)])


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves SIGTERM to the worker, which must drain before exiting."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def server(liveness: Liveness, *, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        build_app(liveness), host="0.0.0.0", port=port, log_config=None, access_log=False
    )
    return _EmbeddedServer(config)
