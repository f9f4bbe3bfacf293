"""Every `/api/v1` route needs a key, and bad input on any route is a 4xx naming what is wrong,
never a 500."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from agent_growth.api import pagination
from tests.api.conftest import API_KEY

AGENT = "/api/v1/agents/{agent}"
LONG_TASK_ID = "t" * 81
FOREIGN_CURSOR = pagination.encode(
    "tasks", at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), ident="agent-coverage-x"
)
NON_UUID_CURSOR = pagination.encode(
    "agents", at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), ident="not-a-uuid"
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
