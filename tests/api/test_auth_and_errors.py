"""Every `/api/v1` route needs a key, and bad input on any route is a 4xx naming what is wrong,
never a 500."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from agent_growth.api import pagination
from tests.api.conftest import API_KEY

AGENT = "/api/v1/agents/{agent}"
LONG_TASK_ID = "t" * 81
NO_TASK_FILTERS = {"status": None, "agent_id": None}
NO_AGENT_FILTERS = {"name": None, "taxonomy_version": None}
FOREIGN_CURSOR = pagination.encode(
    "tasks",
    at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    ident="agent-coverage-x",
    filters=NO_TASK_FILTERS,
)
NON_UUID_CURSOR = pagination.encode(
    "agents",
    at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    ident="not-a-uuid",
    filters=NO_AGENT_FILTERS,
)
SCOPE = {"name": "n", "taxonomy_node_keys": ["Science"]}

# (method, path, request options, expected status, the field the error must name)
BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str | None]] = [
    ("POST", "/api/v1/agents", {"json": {}}, 422, "name"),
    ("POST", "/api/v1/agents", {"json": {**SCOPE, "name": " "}}, 422, "name"),
    ("POST", "/api/v1/agents", {"json": {**SCOPE, "name": "x" * 201}}, 422, "name"),
    ("POST", "/api/v1/agents", {"json": {**SCOPE, "name": "a\x00b"}}, 422, "name"),
    ("POST", "/api/v1/agents", {"json": {**SCOPE, "colour": "red"}}, 422, "colour"),
    ("POST", "/api/v1/agents", {"json": {"name": "n"}}, 422, "taxonomy_node_ids"),
    (
        "POST",
        "/api/v1/agents",
        {"json": {"name": "n", "taxonomy_node_ids": ["not-a-uuid"]}},
        422,
        "taxonomy_node_ids",
    ),
    (
        "POST",
        "/api/v1/agents",
        {"json": {"name": "n", "taxonomy_node_ids": [str(uuid.uuid4())] * 1001}},
        422,
        "taxonomy_node_ids",
    ),
    (
        "POST",
        "/api/v1/agents",
        {"json": {"name": "n", "taxonomy_node_keys": ["Sci\x00ence"]}},
        422,
        "taxonomy_node_keys",
    ),
    (
        "POST",
        "/api/v1/agents",
        {"json": {"name": "n", "taxonomy_node_keys": [7]}},
        422,
        "taxonomy_node_keys",
    ),
    (
        "POST",
        "/api/v1/agents",
        {"json": {**SCOPE, "taxonomy_version": ""}},
        422,
        "taxonomy_version",
    ),
    (
        "POST",
        "/api/v1/agents",
        {"json": {**SCOPE, "target_docs_per_node": 0}},
        422,
        "target_docs_per_node",
    ),
    (
        "POST",
        "/api/v1/agents",
        {"json": {**SCOPE, "target_docs_per_node": 2**40}},
        422,
        "target_docs_per_node",
    ),
    ("POST", "/api/v1/agents", {"json": {**SCOPE, "min_confidence": 1.5}}, 422, "min_confidence"),
    (
        "POST",
        "/api/v1/agents",
        {
            "content": b'{"name": "n", "taxonomy_node_keys": ["Science"], "min_confidence": NaN}',
            "headers": {"Content-Type": "application/json"},
        },
        422,
        "min_confidence",
    ),
    (
        "POST",
        "/api/v1/agents",
        {"json": {**SCOPE, "coverage_targets": {"Science": 0}}},
        422,
        "coverage_targets",
    ),
    (
        "POST",
        "/api/v1/agents",
        {"json": {**SCOPE, "coverage_targets": {"Nowhere": 3}}},
        422,
        "coverage_targets",
    ),
    (
        "POST",
        "/api/v1/agents",
        {"content": b"{", "headers": {"Content-Type": "application/json"}},
        422,
        "body",
    ),
    ("POST", "/api/v1/agents", {"json": []}, 422, "body"),
    ("GET", "/api/v1/agents", {"params": {"limit": 0}}, 422, "limit"),
    ("GET", "/api/v1/agents", {"params": {"limit": "ten"}}, 422, "limit"),
    ("GET", "/api/v1/agents", {"params": {"cursor": "%%%"}}, 422, "cursor"),
    ("GET", "/api/v1/agents", {"params": {"cursor": FOREIGN_CURSOR}}, 422, "cursor"),
    ("GET", "/api/v1/agents", {"params": {"cursor": NON_UUID_CURSOR}}, 422, "cursor"),
    ("GET", "/api/v1/agents", {"params": {"cursor": "x" * 600}}, 422, "cursor"),
    ("GET", "/api/v1/agents", {"params": {"name": "\x00"}}, 422, "name"),
    ("GET", "/api/v1/agents", {"params": {"taxonomy_version": "\x00"}}, 422, "taxonomy_version"),
    ("GET", "/api/v1/agents/not-a-uuid", {}, 422, "agent_id"),
    ("GET", f"/api/v1/agents/{uuid.uuid4()}", {}, 404, None),
    ("DELETE", "/api/v1/agents/not-a-uuid", {}, 422, "agent_id"),
    ("DELETE", f"/api/v1/agents/{uuid.uuid4()}", {}, 404, None),
    ("GET", "/api/v1/agents/not-a-uuid/coverage", {}, 422, "agent_id"),
    ("GET", f"/api/v1/agents/{uuid.uuid4()}/coverage", {}, 404, None),
    ("GET", AGENT + "/coverage/gaps", {"params": {"threshold": 1.01}}, 422, "threshold"),
    ("GET", AGENT + "/coverage/gaps", {"params": {"threshold": -0.1}}, 422, "threshold"),
    ("GET", AGENT + "/coverage/gaps", {"params": {"threshold": "half"}}, 422, "threshold"),
    ("POST", "/api/v1/agents/1234/coverage/refresh", {}, 422, "agent_id"),
    ("POST", AGENT + "/coverage/refresh", {"json": {"priority": "urgent"}}, 422, "priority"),
    ("POST", AGENT + "/coverage/refresh", {"json": {"timeout_seconds": 0}}, 422, "timeout_seconds"),
    (
        "POST",
        AGENT + "/coverage/refresh",
        {"json": {"timeout_seconds": 3601}},
        422,
        "timeout_seconds",
    ),
    (
        "POST",
        AGENT + "/coverage/refresh",
        {"json": {"webhook_url": "ftp://x/y"}},
        422,
        "webhook_url",
    ),
    ("POST", AGENT + "/coverage/refresh", {"json": {"webhook_url": "hook"}}, 422, "webhook_url"),
    (
        "POST",
        AGENT + "/coverage/refresh",
        {"json": {"webhook_url": "https://x.example/" + "a" * 2100}},
        422,
        "webhook_url",
    ),
    ("POST", AGENT + "/coverage/refresh", {"json": {"priorty": "high"}}, 422, "priorty"),
    ("POST", AGENT + "/coverage/refresh", {"json": "high"}, 422, "body"),
    ("POST", AGENT + "/coverage/refresh", {"data": {"priority": "high"}}, 422, "body"),
    ("GET", "/api/v1/agents/nope/coverage/status/t", {}, 422, "agent_id"),
    ("GET", AGENT + f"/coverage/status/{LONG_TASK_ID}", {}, 422, "task_id"),
    ("GET", AGENT + "/coverage/status/agent-coverage-x", {}, 404, None),
    ("GET", AGENT + "/coverage/history", {"params": {"start_date": "soon"}}, 422, "start_date"),
    ("GET", AGENT + "/coverage/history", {"params": {"end_date": "2026-13-01"}}, 422, "end_date"),
    (
        "GET",
        AGENT + "/coverage/history",
        {"params": {"start_date": "2026-02-02", "end_date": "2026-02-01"}},
        422,
        "start_date",
    ),
    (
        "GET",
        AGENT + "/coverage/history",
        {"params": {"start_date": "0001-01-01T00:00:00+23:00"}},
        422,
        "start_date",
    ),
    ("GET", AGENT + "/coverage/history", {"params": {"cursor": "abc"}}, 422, "cursor"),
    ("GET", AGENT + "/coverage/history", {"params": {"limit": 5000}}, 422, "limit"),
    ("GET", "/api/v1/agents/x/coverage/history", {}, 422, "agent_id"),
    ("GET", "/api/v1/agents/tasks", {"params": {"status": "done"}}, 422, "status"),
    ("GET", "/api/v1/agents/tasks", {"params": {"agent_id": "nope"}}, 422, "agent_id"),
    ("GET", "/api/v1/agents/tasks", {"params": {"limit": -1}}, 422, "limit"),
    ("GET", "/api/v1/agents/tasks", {"params": {"cursor": NON_UUID_CURSOR}}, 422, "cursor"),
    ("GET", "/api/v1/agents/tasks/%00", {}, 422, "task_id"),
    ("GET", f"/api/v1/agents/tasks/{LONG_TASK_ID}", {}, 422, "task_id"),
    ("DELETE", f"/api/v1/agents/tasks/{LONG_TASK_ID}", {}, 422, "task_id"),
    ("DELETE", "/api/v1/agents/tasks/agent-coverage-x", {}, 404, None),
]


@pytest.mark.parametrize(
    ("method", "path", "options", "expected", "field"),
    BAD_REQUESTS,
    ids=[
        f"{method} {path} {field or expected}" for method, path, _, expected, field in BAD_REQUESTS
    ],
)
async def test_bad_requests_are_refused_naming_the_field(
    client: httpx.AsyncClient,
    agent_id: uuid.UUID,
    method: str,
    path: str,
    options: dict[str, Any],
    expected: int,
    field: str | None,
) -> None:
    response = await client.request(method, path.format(agent=agent_id), **options)

    assert response.status_code < 500, response.text
    assert response.status_code == expected, response.text
    detail = response.json()["detail"]
    if field is None:
        assert isinstance(detail, str) and detail
    else:
        assert any(field in error["loc"] for error in detail), detail
        assert all(error["msg"] for error in detail)


def api_operations(app: FastAPI) -> list[tuple[str, str]]:
    operations = []
    for path, methods in app.openapi()["paths"].items():
        if not path.startswith("/api/v1"):
            continue
        concrete = path.format(agent_id=uuid.uuid4(), task_id="agent-coverage-x")
        operations += [(method.upper(), concrete) for method in methods]
    return operations


@pytest.mark.parametrize("key", [None, "", "wrong-key", API_KEY + "x", API_KEY[:-1]])
async def test_every_api_route_needs_a_valid_key(
    app: FastAPI, agent_id: uuid.UUID, key: str | None
) -> None:
    headers = {} if key is None else {"X-API-Key": key}
    operations = api_operations(app)
    assert len(operations) >= 10

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test", headers=headers
    ) as anonymous:
        for method, path in operations:
            response = await anonymous.request(method, path)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["WWW-Authenticate"] == "ApiKey"
            assert "X-API-Key" in response.json()["detail"]


async def test_a_valid_key_is_let_through(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/agents")

    assert response.status_code == 200


async def test_openapi_documents_every_route_with_its_response(app: FastAPI) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as anonymous:
        spec = (await anonymous.get("/openapi.json")).json()
        docs = await anonymous.get("/docs")

    assert docs.status_code == 200
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            success = [code for code in operation["responses"] if code.startswith("2")]
            assert success, (method, path)
            content = operation["responses"][success[0]].get("content")
            if success[0] != "204":
                assert content and "schema" in content["application/json"], (method, path)
    assert "APIKeyHeader" in spec["components"]["securitySchemes"]
    # Bounds in JSON Schema's own words, so that generated clients keep them.
    confidence = spec["components"]["schemas"]["AgentCreate"]["properties"]["min_confidence"]
    assert (confidence["minimum"], confidence["maximum"]) == (0, 1)


def forged_cursor(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


# Python's own exception texts, which say nothing a client can act on.
LEAKS = ("codec", "fromisoformat", "hexadecimal", "timedelta", "datetime.", "Error")

# (method, path, request options, the field, what the message must say)
MESSAGES: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("GET", "/api/v1/agents", {"params": {"name": "x" * 201}}, "name", "at most 200 characters"),
    (
        "POST",
        "/api/v1/agents",
        {"json": {**SCOPE, "scope_description": "x" * 10_001}},
        "scope_description",
        "at most 10000 characters",
    ),
    ("GET", f"/api/v1/agents/tasks/{LONG_TASK_ID}", {}, "task_id", "at most 80 characters"),
    (
        "GET",
        AGENT + f"/coverage/status/{LONG_TASK_ID}",
        {},
        "task_id",
        "at most 80 characters",
    ),
    ("GET", "/api/v1/agents", {"params": {"cursor": "gYE"}}, "cursor", "not a cursor this list"),
    (
        "GET",
        "/api/v1/agents",
        {"params": {"cursor": forged_cursor({"k": "agents", "f": "", "t": 5, "i": "x"})}},
        "cursor",
        "not a cursor this list",
    ),
    ("GET", "/api/v1/agents", {"params": {"cursor": NON_UUID_CURSOR}}, "cursor", "not a cursor"),
    (
        "GET",
        AGENT + "/coverage/history",
        {"params": {"start_date": "2026-03-01T00:00:00+25:00"}},
        "start_date",
        "the UTC offset must be between -23:59 and +23:59",
    ),
    (
        "GET",
        AGENT + "/coverage/history",
        {"params": {"end_date": "2026-03-01T00:00:00-05:75"}},
        "end_date",
        "the UTC offset must be between -23:59 and +23:59",
    ),
    (
        "GET",
        AGENT + "/coverage/gaps",
        {"params": {"threshold": "nan"}},
        "threshold",
        "finite number",
    ),
    (
        "POST",
        AGENT + "/coverage/refresh",
        {"json": {"webhook_url": "https://exa mple.com/hook"}},
        "webhook_url",
        "is not a valid host name",
    ),
    (
        "POST",
        AGENT + "/coverage/refresh",
        {"json": {"webhook_url": "https://hooks.example.com:99999/"}},
        "webhook_url",
        "port 99999 is out of range",
    ),
    (
        "POST",
        AGENT + "/coverage/refresh",
        {"json": {"webhook_url": "https://hooks.example.com:0/"}},
        "webhook_url",
        "port 0 is out of range",
    ),
    (
        "POST",
        AGENT + "/coverage/refresh",
        {"json": {"webhook_url": "https://user:pw@hooks.example.com/"}},
        "webhook_url",
        "must not carry credentials",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "options", "field", "says"),
    MESSAGES,
    ids=[f"{method} {path} {field}" for method, path, _, field, _ in MESSAGES],
)
async def test_error_messages_say_what_is_allowed_in_the_clients_terms(
    client: httpx.AsyncClient,
    agent_id: uuid.UUID,
    method: str,
    path: str,
    options: dict[str, Any],
    field: str,
    says: str,
) -> None:
    response = await client.request(method, path.format(agent=agent_id), **options)

    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"][-1] == field
    assert says in error["msg"]
    assert not any(leak in error["msg"] for leak in LEAKS), error["msg"]


async def test_refused_webhook_urls_leave_no_task(
    client: httpx.AsyncClient, agent_id: uuid.UUID
) -> None:
    for url in ("https://exa mple.com/", "https://hooks.example.com:-1/"):
        response = await client.post(
            AGENT.format(agent=agent_id) + "/coverage/refresh", json={"webhook_url": url}
        )
        assert response.status_code == 422, response.text

    listed = await client.get("/api/v1/agents/tasks")
    assert listed.json()["items"] == []


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/agents", {"name": "a\x00b"}),
        ("/api/v1/agents", {"taxonomy_version": "\x00"}),
        ("/api/v1/agents/tasks/a%00b", {}),
    ],
)
async def test_errors_carry_no_empty_context(
    client: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    response = await client.get(path, params=params)

    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["msg"] == "must not contain NUL characters (\\u0000)"
    assert "ctx" not in error, error


async def test_deleting_the_task_list_is_405_not_an_agent_id_error(
    client: httpx.AsyncClient,
) -> None:
    response = await client.delete("/api/v1/agents/tasks")

    assert response.status_code == 405, response.text
    assert response.headers["Allow"] == "GET"
    assert "DELETE /api/v1/agents/tasks/{task_id}" in response.json()["detail"]


@pytest.mark.parametrize("key", [None, "wrong-key"])
async def test_a_malformed_body_without_a_valid_key_is_refused_as_unauthenticated(
    app: FastAPI, agent_id: uuid.UUID, key: str | None
) -> None:
    headers = {"Content-Type": "application/json", **({"X-API-Key": key} if key else {})}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test", headers=headers
    ) as anonymous:
        for path in ("/api/v1/agents", f"/api/v1/agents/{agent_id}/coverage/refresh"):
            response = await anonymous.post(path, content=b"{bad")

            assert response.status_code == 401, (path, response.text)
            assert response.headers["WWW-Authenticate"] == "ApiKey"
