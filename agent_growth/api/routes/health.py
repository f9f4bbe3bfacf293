"""Probes for the orchestrator: liveness that never depends on anything, readiness that does.

`/healthz` answers as long as the process serves requests, so a PostgreSQL outage does not get
every API pod restarted. `/readyz` asks PostgreSQL and Redis, each under a short timeout, and
answers 503 naming what is down, so traffic goes elsewhere until they answer again. Both answer
HEAD as well, with the status and headers of GET and no body.

Readiness asks PostgreSQL over an engine of its own (`probe_engine`, one connection and two
spare), not the pool that requests share: under a burst that holds every pooled connection, a
probe waiting its turn behind the burst would report a healthy database as down and take a
busy pod out of service exactly when it is needed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_growth.api.deps import RedisDep
from agent_growth.api.schemas import Alive, Readiness
from agent_growth.tasks import queue

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_S = 2.0
"""Each dependency must answer within this; probes themselves usually time out after a few s."""

# Probes come a few at a time: one connection kept open, two more while they overlap.
PROBE_POOL_SIZE = 1
PROBE_POOL_OVERFLOW = 2


def probe_engine(database_url: str) -> AsyncEngine:
    """The engine readiness checks use; it connects on the first check, not when created."""
    return create_async_engine(
        database_url,
        pool_size=PROBE_POOL_SIZE,
        max_overflow=PROBE_POOL_OVERFLOW,
        pool_timeout=CHECK_TIMEOUT_S,
    )


async def _check_postgresql(engine: AsyncEngine) -> None:
    """Reachable and migrated: a database without the schema serves nothing."""
    async with engine.connect() as connection:
        migrated = await connection.scalar(text("SELECT to_regclass('alembic_version')"))
    if migrated is None:
        raise RuntimeError("no schema; run `agent-growth migrate`")


async def _check(name: str, probe: Awaitable[None]) -> str:
    try:
        await asyncio.wait_for(probe, timeout=CHECK_TIMEOUT_S)
    except TimeoutError:
        logger.warning("readiness: %s did not answer within %.1f s", name, CHECK_TIMEOUT_S)
        return f"no answer within {CHECK_TIMEOUT_S} s"
    except Exception as exc:  # Any failure means not ready; the message says which.
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        logger.warning("readiness: %s is down: %s", name, reason)
        return f"down: {reason}"
    return "ok"


def _without_body(response: Response) -> Response:
    """The answer to HEAD: the status and headers GET would have, without its body."""
    return Response(status_code=response.status_code, headers=dict(response.headers))


@router.get("/healthz", response_model=Alive, summary="Liveness")
async def healthz() -> Alive:
    return Alive(status="alive")


@router.head("/healthz", include_in_schema=False)
async def healthz_head() -> Response:
    return _without_body(JSONResponse(Alive(status="alive").model_dump()))


async def _readiness(request: Request, redis: RedisDep) -> JSONResponse:
    engine: AsyncEngine = request.app.state.probe_engine
    postgresql, redis_state = await asyncio.gather(
        _check("postgresql", _check_postgresql(engine)), _check("redis", queue.ping(redis))
    )
    checks = {"postgresql": postgresql, "redis": redis_state}
    if all(state == "ok" for state in checks.values()):
        return JSONResponse(Readiness(status="ready", checks=checks).model_dump())
    readiness = Readiness(status="unavailable", checks=checks)
    return JSONResponse(status_code=503, content=readiness.model_dump())


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: PostgreSQL and Redis answer",
    responses={503: {"model": Readiness, "description": "A dependency is down"}},
)
async def readyz(request: Request, redis: RedisDep) -> JSONResponse:
    return await _readiness(request, redis)


@router.head("/readyz", include_in_schema=False)
async def readyz_head(request: Request, redis: RedisDep) -> Response:
    return _without_body(await _readiness(request, redis))
