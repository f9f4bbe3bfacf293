"""Request and response bodies of the REST API.

Requests forbid unknown fields: a misspelt `timout_seconds` is refused with a 422 naming it,
rather than silently ignored so that the task runs with the default. Responses write every
timestamp in ISO 8601 with an explicit UTC offset (`+00:00`), whatever time zone the database
session happens to use.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

MAX_SCOPE_NODES = 1000
"""Nodes one agent may name; its scope still includes every descendant of them."""

MAX_TARGET_DOCS = 100_000
"""Upper bound of a per-node document target; far above any real corpus, well inside int32."""

MAX_DESCRIPTION_CHARS = 10_000


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refusing it here keeps it from becoming a driver error.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (\\u0000)")
    return value


def _iso_utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


Text = Annotated[str, AfterValidator(_no_nul)]
NodeKey = Annotated[str, StringConstraints(min_length=1, max_length=1000), AfterValidator(_no_nul)]
VersionName = Annotated[
    str, StringConstraints(min_length=1, max_length=64), AfterValidator(_no_nul)
]
UtcDatetime = Annotated[
    dt.datetime,
    PlainSerializer(_iso_utc, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]
Priority = Literal["high", "medium", "low"]
TaskStatusName = Literal["pending", "running", "completed", "failed", "cancelled", "timeout"]


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentCreate(RequestBody):
    """An agent's scope is given either by node ids or by node keys of one taxonomy version."""

    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
        AfterValidator(_no_nul),
    ]
    taxonomy_node_ids: list[uuid.UUID] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SCOPE_NODES,
        description="Scope nodes by id. Give this or `taxonomy_node_keys`, not both.",
    )
    taxonomy_node_keys: list[NodeKey] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SCOPE_NODES,
        description="Scope nodes by key. Give this or `taxonomy_node_ids`, not both.",
    )
    taxonomy_version: VersionName = "1"
    scope_description: Annotated[Text, Field(max_length=MAX_DESCRIPTION_CHARS)] | None = None
    target_docs_per_node: int = Field(default=10, ge=1, le=MAX_TARGET_DOCS)
    min_confidence: float = Field(default=0.7, ge=0, le=1)
    coverage_targets: dict[NodeKey, Annotated[int, Field(ge=1, le=MAX_TARGET_DOCS)]] | None = Field(
        default=None,
        max_length=MAX_SCOPE_NODES,
        description=(
            "Per-node document targets, by node key or id; each node must be in the scope "
            "(a named node or one below it). Other nodes use `target_docs_per_node`."
        ),
        examples=[{"Science.Birds": 25}],
    )


class AgentOut(BaseModel):
    id: uuid.UUID
    name: str
    taxonomy_node_ids: list[uuid.UUID]
    taxonomy_version: str
    scope_description: str | None
    target_docs_per_node: int
    min_confidence: float
    coverage_targets: dict[str, int] = Field(description="Per-node targets, by node key.")
    coverage_percent: float | None = Field(description="Overall coverage of the last refresh.")
    total_documents: int | None
    total_chunks: int | None
    last_coverage_update: UtcDatetime | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class AgentPage(BaseModel):
    items: list[AgentOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end.")


class GapOut(BaseModel):
    node_id: uuid.UUID
    node_key: str
    path: str
    documents: int
    target: int
    coverage: float
    missing_docs: int
    recommendation: str


class CoverageOut(BaseModel):
    agent_id: uuid.UUID
    overall_coverage: float = Field(description="Percent, 0 to 100.")
    node_coverage: dict[str, float] = Field(description="Percent per node key.")
    document_counts: dict[str, int]
    target_counts: dict[str, int]
    total_documents: int
    total_chunks: int
    gaps: list[GapOut]
    version: str
    calculated_at: UtcDatetime


class GapsOut(BaseModel):
    agent_id: uuid.UUID
    threshold: float
    gaps: list[GapOut]


class RefreshRequest(RequestBody):
    webhook_url: Annotated[str, StringConstraints(max_length=2048)] | None = Field(
        default=None,
        description="Receives a POST when the task ends; a public http(s) URL.",
        examples=["https://hooks.example.com/agent-growth"],
    )
    priority: Priority = "medium"
    timeout_seconds: int = Field(default=300, ge=1, le=3600)


class TaskOut(BaseModel):
    task_id: str
    agent_id: uuid.UUID
    task_type: str
    status: TaskStatusName
    priority: Priority
    timeout_seconds: int
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    completed_at: UtcDatetime | None
    result: dict[str, Any] | None
    error: str | None
    webhook_url: str | None
    webhook_retry_count: int
    cancellation_requested: bool
    progress_percentage: int
    estimated_completion_at: UtcDatetime | None
    attempts: int


class TaskStatusOut(TaskOut):
    queue_position: int | None = Field(
        description="For a pending task, 1 when it is the next to run; null otherwise."
    )


class TaskPage(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None


class HistoryEntry(BaseModel):
    id: uuid.UUID
    task_id: str | None
    timestamp: UtcDatetime
    overall_coverage: float
    total_documents: int
    total_chunks: int
    version: str
    node_coverage: dict[str, Any] = Field(
        description='Per node key: `{"documents": n, "target": t, "coverage": percent}`.'
    )


class HistoryPage(BaseModel):
    agent_id: uuid.UUID
    history: list[HistoryEntry]
    total_entries: int = Field(description="Entries within the date bounds, over all pages.")
    next_cursor: str | None


class Alive(BaseModel):
    status: Literal["alive"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str] = Field(description='"ok", or what went wrong, per dependency.')


class Problem(BaseModel):
    detail: str


class TaskConflict(Problem):
    status: TaskStatusName = Field(description="The status the task already ended with.")
