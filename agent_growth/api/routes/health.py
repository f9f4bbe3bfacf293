"""Probes for the orchestrator: liveness that never depends on anything, readiness that does.

`/healthz` answers as long as the process serves requests, so a PostgreSQL outage does not get
every API pod restarted. `/readyz` asks PostgreSQL and Redis, each under a short timeout, and
answers 503 naming what is down, so traffic goes elsewhere until they answer again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from agent_growth.api.deps import RedisDep
from agent_growth.api.schemas import Alive, Readiness
from agent_growth.db import engine as db_engine
from agent_growth.tasks import queue

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_S = 2.0
"""Each dependency must answer within this; probes themselves usually time out after a few s."""


async def _check_postgresql() -> None:
    async with db_engine.session_factory()() as session:
        await session.execute(text("SELECT 1"))


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


@router.get("/healthz", response_model=Alive, summary="Liveness")
async def healthz() -> Alive:
    return Alive(status="alive")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: PostgreSQL and Redis answer",
    responses={503: {"model": Readiness, "description": "A dependency is down"}},
)
async def readyz(redis: RedisDep) -> Readiness | JSONResponse:
    postgresql, redis_state = await asyncio.gather(
        _check("postgresql", _check_postgresql()), _check("redis", queue.ping(redis))
    )
    checks = {"postgresql": postgresql, "redis": redis_state}
    if all(state == "ok" for state in checks.values()):
        return Readiness(status="ready", checks=checks)
    readiness = Readiness(status="unavailable", checks=checks)
    return JSONResponse(status_code=503, content=readiness.model_dump())
