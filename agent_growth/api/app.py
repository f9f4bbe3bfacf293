"""The FastAPI application: resource routers under `/api/v1`, probes and metrics at the root.

`create_app()` is a factory rather than a module-level app, so settings are read when the app
is built (tests change the environment between apps) and importing this module has no effects.
Serve it with `uvicorn agent_growth.api.app:create_app --factory`, or `agent-growth api`.

One Redis client is opened per process in the lifespan and shared by every request; its
connection pool is what makes that safe. The database engine is created on first use and
disposed at shutdown. The readiness probe has a small engine of its own (see `routes/health`),
made in the lifespan, connected by the first probe and disposed at shutdown.

Query parameters a route does not define are ignored, as in FastAPI generally: proxies and
clients add their own (cache busters, tracing), and a misspelt filter shows itself in the
unfiltered answer. Bodies are strict instead, unknown fields refused with a 422, because a
misspelt body field would silently change what a task does.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

import agent_growth
from agent_growth.api import deps, errors, request_body, task_logging
from agent_growth.api.routes import agents, coverage, health, metrics, tasks, taxonomy
from agent_growth.api.schemas import Problem
from agent_growth.db import engine as db_engine
from agent_growth.settings import get_settings
from agent_growth.tasks import queue

logger = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.redis = queue.connect()
    app.state.probe_engine = health.probe_engine(get_settings().database_url)
    logger.info("API started")
    try:
        yield
    finally:
        await app.state.redis.aclose()
        await app.state.probe_engine.dispose()
        await db_engine.dispose()
        if get_settings().kubernetes:
            from agent_growth import kube  # Only cluster mode has a Kubernetes client.

            await kube.close()
        logger.info("API stopped")


def create_app() -> FastAPI:
    app = FastAPI(
        title="Agent Growth",
        summary="Taxonomy coverage of knowledge agents, refreshed as background tasks.",
        description="Every `/api/v1` route needs one of the accepted keys in `X-API-Key`.",
        version=agent_growth.__version__,
        lifespan=lifespan,
    )
    errors.install(app)
    # Middleware added later runs further out: metrics count the 413s of BodyLimit too, and the
    # task id scope covers every record of a request.
    app.add_middleware(request_body.BodyLimit)
    app.add_middleware(metrics.RequestMetrics)
    app.add_middleware(task_logging.TaskIdScope)

    # `/agents/tasks...` before `/agents/{agent_id}`, which would otherwise take `tasks` as an id.
    for resource in (tasks, agents, coverage, taxonomy):
        app.include_router(
            resource.router,
            dependencies=[Depends(deps.require_api_key)],
            responses={401: {"model": Problem, "description": "Missing or unknown API key"}},
        )
    app.include_router(health.router)
    app.include_router(metrics.router)
    return app
