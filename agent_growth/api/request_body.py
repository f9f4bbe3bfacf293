"""Request bodies: a size limit, and JSON read strictly, so that a bad body is a clear 4xx.

Every body this API takes is a small JSON object, so the app refuses anything larger than
`MAX_BODY_BYTES` with a 413. `BodyLimit` answers from `Content-Length` before reading a byte,
and counts the bytes of a body sent without one (chunked), stopping as soon as the count passes
the limit: an oversized body is never read whole, let alone held in memory.

`JsonBodyRoute` parses a JSON body before FastAPI does, because FastAPI answers 400 "There was
an error parsing the body" for a body that is not UTF-8 or nests too deeply, without saying
which. Here each is a 422 at `["body"]` that says what is wrong. The body is always read as
UTF-8, as RFC 8259 requires of JSON between systems; a `charset` parameter has no meaning for
`application/json` and is not honoured. NaN and Infinity, which Python's parser accepts, are
left to the field validation, which refuses them naming the field.
"""

from __future__ import annotations

import email.message
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_growth.api import deps
from agent_growth.settings import get_settings

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
"""1 MiB. A large real body, an agent naming 1000 scope nodes and 1000 targets by keys of about
100 characters, is about 250 KiB; anything past 1 MiB is a mistake or an attack, and reading it
costs memory. (Scopes of 1000 keys near their 1000-character limit would not fit; ids would.)"""

TOO_LARGE = (
    f"the request body is larger than {MAX_BODY_BYTES} bytes (1 MiB), the most this API "
    "accepts; send a smaller JSON object"
)


class BodyLimit:
    """ASGI middleware refusing request bodies over `MAX_BODY_BYTES` with a 413."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            logger.warning("refused a %d-byte request body before reading it", declared)
            await JSONResponse(status_code=413, content={"detail": TOO_LARGE})(scope, receive, send)
            return

        received_bytes = 0

        async def receive_within_limit() -> Message:
            nonlocal received_bytes
            message = await receive()
            if message["type"] == "http.request":
                received_bytes += len(message.get("body", b""))
                if received_bytes > self.max_body_bytes:
                    logger.warning("stopped reading a request body at %d bytes", received_bytes)
                    # Raised where the body is read; FastAPI passes HTTPException through.
                    raise HTTPException(status_code=413, detail=TOO_LARGE)
            return message

        await self.app(scope, receive_within_limit, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def is_json(content_type: str | None) -> bool:
    """True for `application/json` and `application/*+json`, the types FastAPI parses."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _charset(content_type: str) -> str | None:
    message = email.message.Message()
    message["content-type"] = content_type
    charset = message.get_param("charset")
    return charset if isinstance(charset, str) else None


def _invalid_body(message: str, *, kind: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body",), "msg": message, "type": kind}])


def parse_json(body: bytes, *, content_type: str) -> Any:
    """The JSON value of `body`; RequestValidationError at `["body"]` saying why it is not one."""
    try:
        # utf-8-sig: RFC 8259 lets a parser ignore a byte order mark, so a leading one is dropped.
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        charset = _charset(content_type)
        named = ""
        if charset and charset.lower().replace("-", "") != "utf8":
            named = f"; charset={charset} is not honoured"
        raise _invalid_body(
            f"is not UTF-8 (invalid byte at position {exc.start}); send JSON encoded as UTF-8, "
            f"as RFC 8259 requires{named}",
            kind="json_invalid",
        ) from exc

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _invalid_body(
            f"is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            kind="json_invalid",
        ) from exc
    except RecursionError as exc:
        raise _invalid_body(
            "nests arrays or objects too deeply to be read; request bodies here are flat "
            "objects of values and short lists",
            kind="json_invalid",
        ) from exc
    except ValueError as exc:
        # Python refuses to read integers of more than 4300 digits (a guard against slow parsing).
        raise _invalid_body(
            f"holds a value that cannot be read: {exc}", kind="json_invalid"
        ) from exc


class JsonRequest(Request):
    """A request whose JSON body is parsed once, by `parse_json`."""

    _parsed: Any

    async def json(self) -> Any:
        if not hasattr(self, "_parsed"):
            content_type = self.headers.get("content-type", "")
            self._parsed = parse_json(await self.body(), content_type=content_type)
        return self._parsed


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class JsonBodyRoute(APIRoute):
    """A route that parses its JSON body with `parse_json` before FastAPI reads it.

    The parsing happens outside FastAPI's own body handling, whose catch-all would turn these
    errors into a bare 400; FastAPI then reads the value parsed here.
    """

    def get_route_handler(self) -> Handler:
        handle = super().get_route_handler()
        takes_body = self.body_field is not None

        async def parse_then_handle(request: Request) -> Response:
            request = JsonRequest(request.scope, request.receive)
            content_type = request.headers.get("content-type")
            if takes_body and is_json(content_type) and await request.body():
                try:
                    await request.json()
                except RequestValidationError:
                    # A client without a valid key learns that first, not what its body lacks.
                    deps.check_api_key(get_settings(), request.headers.get(deps.API_KEY_HEADER))
                    raise
            return await handle(request)

        return parse_then_handle
