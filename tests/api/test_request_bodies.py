"""Request bodies: JSON objects only, read as UTF-8, numbers and booleans taken as sent, at most
1 MiB. Every refusal is a 4xx that says what to send, and nothing refused is written."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth.db.models import Agent, BackgroundTask
from tests.api.conftest import Corpus

AGENTS = "/api/v1/agents"
SCOPE = {"name": "Naturalist", "taxonomy_node_keys": ["Science"]}
JSON = {"Content-Type": "application/json"}
LIMIT_BYTES = 1024 * 1024


def refresh_url(agent_id: uuid.UUID) -> str:
    return f"{AGENTS}/{agent_id}/coverage/refresh"


async def rows(session: AsyncSession) -> tuple[int, int]:
    agents = await session.scalar(select(func.count()).select_from(Agent))
    tasks = await session.scalar(select(func.count()).select_from(BackgroundTask))
    return agents or 0, tasks or 0


def only_error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert len(detail) == 1, detail
    error: dict[str, Any] = detail[0]
    return error


@pytest.mark.parametrize(
    ("options", "sent_as"),
    [
        ({"content": json.dumps(SCOPE).encode()}, "without a Content-Type"),
        ({"content": json.dumps(SCOPE), "headers": {"Content-Type": "text/plain"}}, "text/plain"),
        ({"data": {"name": "Naturalist"}}, "application/x-www-form-urlencoded"),
        ({"json": [SCOPE]}, None),
        ({"json": "Naturalist"}, None),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_told_to_send_one(
    client: httpx.AsyncClient, corpus: Corpus, options: dict[str, Any], sent_as: str | None
) -> None:
    response = await client.post(AGENTS, **options)

    error = only_error(response)
    assert error["loc"] == ["body"]
    assert error["msg"].startswith(
        "the body must be a JSON object sent with Content-Type: application/json"
    )
    if sent_as is not None:
        assert sent_as in error["msg"]


@pytest.mark.parametrize(
    ("content", "content_type", "message"),
    [
        (b'{"name": "Natur\xe9list"}', "application/json", "is not UTF-8"),
        (
            '{"name": "Naturélist"}'.encode("latin-1"),
            "application/json; charset=latin-1",
            "charset=latin-1 is not honoured",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", "nests arrays or objects too deeply"),
        (b'{"name": "Naturalist",}', "application/json", "is not valid JSON"),
        (b'{"name": ', "application/merge-patch+json", "is not valid JSON"),
        (b'{"x": ' + b"1" * 4301 + b"}", "application/json", "holds a value that cannot be read"),
    ],
)
async def test_a_body_that_cannot_be_read_as_json_is_422_saying_why(
    client: httpx.AsyncClient,
    session: AsyncSession,
    content: bytes,
    content_type: str,
    message: str,
) -> None:
    response = await client.post(AGENTS, content=content, headers={"Content-Type": content_type})

    error = only_error(response)
    assert error["loc"] == ["body"]
    assert message in error["msg"]
    assert await rows(session) == (0, 0)


async def test_a_utf8_body_is_read_whatever_charset_it_names(
    client: httpx.AsyncClient, corpus: Corpus
) -> None:
    body = json.dumps({**SCOPE, "name": "Naturéliste"}, ensure_ascii=False).encode()

    response = await client.post(
        AGENTS, content=body, headers={"Content-Type": "application/json; charset=utf-8"}
    )

    assert response.status_code == 201, response.text
    assert response.json()["name"] == "Naturéliste"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("target_docs_per_node", "5"),
        ("target_docs_per_node", True),
        ("target_docs_per_node", 5.0),
        ("min_confidence", "0.5"),
        ("min_confidence", True),
        ("coverage_targets", {"Science.Birds": "5"}),
        ("coverage_targets", {"Science.Birds": True}),
    ],
)
async def test_agent_numbers_are_not_coerced_from_strings_or_booleans(
    client: httpx.AsyncClient, session: AsyncSession, corpus: Corpus, field: str, value: Any
) -> None:
    response = await client.post(AGENTS, json={**SCOPE, field: value})

    error = only_error(response)
    assert error["loc"][:2] == ["body", field]
    assert "send a JSON number, not a string or a boolean" in error["msg"]
    assert await rows(session) == (0, 0)


@pytest.mark.parametrize("value", [True, "60", 60.0])
async def test_refresh_timeout_is_not_coerced(
    client: httpx.AsyncClient, session: AsyncSession, agent_id: uuid.UUID, value: Any
) -> None:
    response = await client.post(refresh_url(agent_id), json={"timeout_seconds": value})

    error = only_error(response)
    assert error["loc"] == ["body", "timeout_seconds"]
    assert await rows(session) == (1, 0)


async def test_whole_numbers_are_still_numbers_where_a_fraction_is_allowed(
    client: httpx.AsyncClient, corpus: Corpus
) -> None:
    response = await client.post(AGENTS, json={**SCOPE, "min_confidence": 1})

    assert response.status_code == 201, response.text
    assert response.json()["min_confidence"] == 1.0


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
async def test_a_confidence_that_is_not_finite_is_refused_saying_the_range(
    client: httpx.AsyncClient, session: AsyncSession, corpus: Corpus, literal: bytes
) -> None:
    body = b'{"name": "n", "taxonomy_node_keys": ["Science"], "min_confidence": ' + literal + b"}"

    response = await client.post(AGENTS, content=body, headers=JSON)

    error = only_error(response)
    assert error["loc"] == ["body", "min_confidence"]
    assert error["msg"] == "Input should be a finite number between 0 and 1"
    assert await rows(session) == (0, 0)


class Chunks:
    """A request body sent in chunks, counting how many the server asked for."""

    def __init__(self, *, chunk_bytes: int, count: int) -> None:
        self.chunk = b" " * chunk_bytes
        self.count = count
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            self.sent += 1
            yield self.chunk


async def test_an_oversized_body_is_refused_from_its_content_length_without_reading_it(
    client: httpx.AsyncClient, corpus: Corpus
) -> None:
    body = Chunks(chunk_bytes=64 * 1024, count=32)
    length = str(64 * 1024 * 32)

    response = await client.post(AGENTS, content=body, headers={**JSON, "Content-Length": length})

    assert response.status_code == 413
    assert "larger than 1048576 bytes (1 MiB)" in response.json()["detail"]
    assert body.sent == 0


async def test_an_oversized_streamed_body_is_refused_once_it_passes_the_limit(
    client: httpx.AsyncClient, session: AsyncSession, corpus: Corpus
) -> None:
    chunk_bytes = 64 * 1024
    body = Chunks(chunk_bytes=chunk_bytes, count=64)

    response = await client.post(AGENTS, content=body, headers=JSON)

    assert response.status_code == 413
    assert "larger than 1048576 bytes (1 MiB)" in response.json()["detail"]
    assert body.sent == LIMIT_BYTES // chunk_bytes + 1
    assert await rows(session) == (0, 0)


async def test_a_body_at_the_limit_is_read(client: httpx.AsyncClient, corpus: Corpus) -> None:
    # Padding with spaces keeps the JSON valid, so the answer is about its content alone.
    body = json.dumps(SCOPE).encode()
    body += b" " * (LIMIT_BYTES - len(body))

    response = await client.post(AGENTS, content=body, headers=JSON)

    assert response.status_code == 201, response.text
