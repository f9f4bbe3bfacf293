"""Request and response bodies of the REST API.

Requests forbid unknown fields: a misspelt `timout_seconds` is refused with a 422 naming it,
rather than silently ignored so that the task runs with the default. Numbers in a body are
strict: `"60"` or `true` is refused rather than read as 60 or 1, since a client sending them has
a bug that coercion would hide. Ids stay lax, because JSON can only carry them as strings.

Responses write every timestamp in ISO 8601 with an explicit UTC offset (`+00:00`), whatever
time zone the database session happens to use.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from agent_growth.db.models import DEFAULT_PRIORITY, DEFAULT_TIMEOUT_S
from agent_growth.webhooks import guard

MAX_SCOPE_NODES = 1000
"""Nodes one agent may name; its scope still includes every descendant of them."""

MAX_TARGET_DOCS = 100_000
"""Upper bound of a per-node document target; far above any real corpus, well inside int32."""

MAX_DESCRIPTION_CHARS = 10_000
"""A few paragraphs say what an agent is for; longer text is a paste gone wrong, not a scope."""

MAX_NODE_KEY_CHARS = 1000
"""Far beyond any dotted taxonomy path; it bounds what one key in a body can make us look up."""

MAX_VERSION_CHARS = 64
"""The width of the `taxonomy_nodes.version` and `agents.taxonomy_version` columns."""

MAX_TIMEOUT_S = 3600
"""The longest deadline a refresh may ask for; the `background_tasks` timeout check agrees."""

MAX_NAME_CHARS = 200
"""The width of the `agents.name` column."""

MAX_TASK_ID_CHARS = 80
"""The width of the `background_tasks.task_id` column; no longer id can name a task."""


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refusing it here keeps it from becoming a driver error.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (\\u0000)")
    return value


def _finite_share(value: object) -> object:
    # Python's JSON parser reads NaN and Infinity, which JSON itself does not have; without this
    # a NaN would fail the range check with a message that does not say what is wrong.
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError(
            "finite_number", "Input should be a finite number between 0 and 1"
        )
    return value


def _iso_utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


# Length limits sit in StringConstraints, before the NUL check: a limit placed after another
# validator is checked as a generic length and reported in "items" rather than characters.
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME_CHARS),
    AfterValidator(_no_nul),
]
NameFilter = Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS), AfterValidator(_no_nul)]
Description = Annotated[
    str, StringConstraints(max_length=MAX_DESCRIPTION_CHARS), AfterValidator(_no_nul)
]
TaskId = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_TASK_ID_CHARS), AfterValidator(_no_nul)
]
NodeKey = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_NODE_KEY_CHARS), AfterValidator(_no_nul)
]
VersionName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_VERSION_CHARS), AfterValidator(_no_nul)
]
UtcDatetime = Annotated[
    dt.datetime,
    PlainSerializer(_iso_utc, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]
DocCount = Annotated[int, Field(strict=True, ge=1, le=MAX_TARGET_DOCS)]
Share = Annotated[
    float, Field(strict=True, ge=0, le=1, allow_inf_nan=False), BeforeValidator(_finite_share)
]
Priority = Literal["high", "medium", "low"]
TaskStatusName = Literal["pending", "running", "completed", "failed", "cancelled", "timeout"]


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentCreate(RequestBody):
    """An agent's scope is given either by node ids or by node keys of one taxonomy version."""

    name: Name
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
    scope_description: Description | None = None
    target_docs_per_node: DocCount = 10
    min_confidence: Share = 0.7
    coverage_targets: dict[NodeKey, DocCount] | None = Field(
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


class TaxonomyNodeOut(BaseModel):
    id: uuid.UUID
    key: str = Field(description="What `taxonomy_node_keys` of an agent names.")
    version: str
    label: str
    path: str
    level: int = Field(description="1 for a root, 2 for its children, and so on.")
    parent_id: uuid.UUID | None
    documents: int = Field(
        description="Distinct documents labelled with this node or any node below it."
    )


class TaxonomyNodePage(BaseModel):
    items: list[TaxonomyNodeOut]
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
    webhook_url: Annotated[str, StringConstraints(max_length=guard.MAX_URL_CHARS)] | None = Field(
        default=None,
        description="Receives a POST when the task ends; a public http(s) URL.",
        examples=["https://hooks.example.com/agent-growth"],
    )
    priority: Priority = DEFAULT_PRIORITY
    timeout_seconds: Annotated[int, Field(strict=True, ge=1, le=MAX_TIMEOUT_S)] = DEFAULT_TIMEOUT_S


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
    items: list[TaskStatusOut] = Field(
        description="Queue positions and ETAs are current, as in each task's status."
    )
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
