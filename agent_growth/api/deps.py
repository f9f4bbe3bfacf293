"""What routes receive from FastAPI: a database session, the Redis client, the settings, and the
caller's API key, each as an `Annotated` alias so a route's signature says what it uses.

Every dependency is `async def`, although none of them awaits: FastAPI runs a plain `def`
dependency in its thread pool, a hop that costs more than the work these do. None of them may
block, for the same reason.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth.db import engine as db_engine
from agent_growth.settings import Settings, get_settings

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"

# auto_error=False: a missing key gets the same 401 and challenge as a wrong one, not a 403.
_api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="One of the keys in AGENT_GROWTH_API_KEYS.",
)


async def _session() -> AsyncIterator[AsyncSession]:
    async with db_engine.session_factory()() as session:
        yield session


async def _redis(request: Request) -> aioredis.Redis:
    client: aioredis.Redis = request.app.state.redis
    return client


async def _settings() -> Settings:
    # Read once per process and cached, so no file or environment is read per request.
    return get_settings()


SettingsDep = Annotated[Settings, Depends(_settings)]
SessionDep = Annotated[AsyncSession, Depends(_session)]
RedisDep = Annotated[aioredis.Redis, Depends(_redis)]


async def require_api_key(
    settings: SettingsDep, key: Annotated[str | None, Security(_api_key_header)]
) -> str:
    return check_api_key(settings, key)


def check_api_key(settings: Settings, key: str | None) -> str:
    """`key` if it is one of the accepted keys, else the 401 every route answers."""
    # compare_digest against every key, so the time taken does not tell which prefix matched.
    given = (key or "").encode()
    matched = False
    for accepted in settings.api_keys:
        matched |= hmac.compare_digest(given, accepted.encode())
    if not key or not matched:
        raise HTTPException(
            status_code=401,
            detail=f"send a valid API key in the {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    return key


ApiKeyDep = Annotated[str, Depends(require_api_key)]
