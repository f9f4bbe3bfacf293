"""Translating the core's errors into HTTP answers, so no route handles them one by one.

Bad input is a 422 shaped like FastAPI's own validation errors (`detail` is a list of
`{loc, msg, type}` with `loc` naming the field), so a client parses one format whatever layer
refused the value. An unreachable dependency is a 503 with `Retry-After`, never a 500: the
request was fine and will work once Redis, PostgreSQL or the cluster answers again.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DataError, InterfaceError, OperationalError, ProgrammingError

from agent_growth.api import request_body
from agent_growth.errors import (
    ClusterUnavailable,
    InvalidInput,
    NotFound,
    QueueUnavailable,
    TaskAlreadyFinished,
)

logger = logging.getLogger(__name__)

JSON_OBJECT_EXPECTED = "the body must be a JSON object sent with Content-Type: application/json"

# What pydantic reports when the body is not an object: a JSON array or string, or the raw bytes
# FastAPI passes on when the Content-Type is not JSON.
_NOT_AN_OBJECT = frozenset({"model_attributes_type", "model_type", "dict_type"})

# Strict number fields report these; the hint says what the client must change.
_NUMBER_TYPES = frozenset({"int_type", "float_type"})

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


def _json_scalar(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int | bool)


def _client_error(error: dict[str, Any], *, content_type: str) -> dict[str, Any]:
    """`loc`, `msg`, `type` and the JSON-representable part of `ctx` of one validation error."""
    loc = list(error["loc"])
    # pydantic prefixes the messages of our own validators with "Value error, ".
    message = error["msg"].removeprefix("Value error, ")
    if loc == ["body"] and error["type"] in _NOT_AN_OBJECT:
        message = JSON_OBJECT_EXPECTED
        if not content_type:
            message += " (it was sent without a Content-Type)"
        elif not request_body.is_json(content_type):
            message += f" (it was sent as {content_type})"
    elif loc[:1] == ["body"] and error["type"] in _NUMBER_TYPES:
        message += "; send a JSON number, not a string or a boolean"

    client_error: dict[str, Any] = {"loc": loc, "msg": message, "type": error["type"]}
    # ctx holds the constraint (`le`, `max_length`); an exception object in it has no JSON form,
    # and its text is already the message.
    ctx = {key: value for key, value in error.get("ctx", {}).items() if _json_scalar(value)}
    if ctx:
        client_error["ctx"] = ctx
    return client_error


async def _request_invalid(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's own handler echoes each rejected `input`, which fails to render as JSON when it
    # is NaN or infinite (Python's JSON parser accepts those, the encoder refuses them) and can
    # be megabytes long. `loc`, `msg` and `type`, plus the constraint in `ctx`, say enough.
    assert isinstance(exc, RequestValidationError)
    content_type = request.headers.get("content-type", "")
    errors = [_client_error(error, content_type=content_type) for error in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})


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


async def _schema_missing(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(getattr(exc, "orig", None), psycopg.errors.UndefinedTable):
        raise exc  # Any other programming error is a bug, and a 500 is the truth.
    logger.error("answering 503: the database has no schema; run `agent-growth migrate`")
    return unavailable("the database schema is missing; run `agent-growth migrate`")


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
    app.add_exception_handler(ProgrammingError, _schema_missing)
    app.add_exception_handler(RedisConnectionError, _redis_unavailable)
    app.add_exception_handler(RedisTimeoutError, _redis_unavailable)
