"""Translating the core's errors into HTTP answers, so no route handles them one by one.

Bad input is a 422 shaped like FastAPI's own validation errors (`detail` is a list of
`{loc, msg, type}` with `loc` naming the field), so a client parses one format whatever layer
refused the value. An unreachable dependency is a 503 with `Retry-After`, never a 500: the
request was fine and will work once Redis, PostgreSQL or the cluster answers again.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DataError, InterfaceError, OperationalError

from agent_growth.errors import (
    ClusterUnavailable,
    InvalidInput,
    NotFound,
    QueueUnavailable,
    TaskAlreadyFinished,
)

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5
"""Asked of clients after a 503; about the time a restarted Redis or PostgreSQL needs."""


class InvalidQuery(InvalidInput):
    """A query parameter is refused; reported under `["query", field]` like FastAPI's own."""

    location = "query"


def validation_error(*, location: str, field: str, message: str, kind: str) -> JSONResponse:
    return JSONResponse(
        status_code=422,
        content={"detail": [{"loc": [location, field], "msg": message, "type": kind}]},
    )


def unavailable(message: str) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={"detail": f"{message}; retry in {RETRY_AFTER_S} s"},
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def _request_invalid(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's own handler echoes each rejected `input`, which fails to render as JSON when it
    # is NaN or infinite (Python's JSON parser accepts those, the encoder refuses them) and can
    # be megabytes long. `loc`, `msg` and `type`, plus the constraint in `ctx`, say enough.
    assert isinstance(exc, RequestValidationError)
    errors = [
        {key: error[key] for key in ("loc", "msg", "type", "ctx") if key in error}
        for error in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder(errors)})


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": str(exc)})


async def _already_finished(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TaskAlreadyFinished)
    return JSONResponse(
        status_code=409,
        content={
            "detail": f"{exc}; only pending or running tasks can be cancelled",
            "status": exc.status,
        },
    )


async def _invalid_input(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidInput)
    return validation_error(
        location=getattr(exc, "location", "body"),
        field=exc.field,
        message=exc.message,
        kind="value_error",
    )


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    # Request validation should refuse such values first; reaching here means it missed one.
    first_line = str(getattr(exc, "orig", exc)).splitlines()[0]
    logger.warning("PostgreSQL refused a value that validation let through: %s", first_line)
    return validation_error(
        location="body", field="request", message=first_line, kind="value_error"
    )


async def _queue_unavailable(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("answering 503: %s", exc)
    return unavailable(f"the task queue is unavailable ({exc})")


async def _cluster_unavailable(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("answering 503: %s", exc)
    return unavailable(f"the Kubernetes API is unavailable ({exc})")


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    first_line = str(getattr(exc, "orig", exc)).splitlines()[0]
    logger.warning("answering 503, PostgreSQL unavailable: %s", first_line)
    return unavailable("the database is unavailable")


async def _redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("answering 503, Redis unavailable: %s", exc)
    return unavailable("Redis is unavailable")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(TaskAlreadyFinished, _already_finished)
    app.add_exception_handler(InvalidInput, _invalid_input)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(QueueUnavailable, _queue_unavailable)
    app.add_exception_handler(ClusterUnavailable, _cluster_unavailable)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)
    app.add_exception_handler(RedisConnectionError, _redis_unavailable)
    app.add_exception_handler(RedisTimeoutError, _redis_unavailable)
