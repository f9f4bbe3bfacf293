"""The coverage definition: how well the corpus covers an agent's scope, node by node.

An agent names some taxonomy nodes; its scope is those nodes and all their descendants in the
agent's taxonomy version. A node counts the distinct documents labelled with it or with any node
below it, at or above the agent's confidence bar, and is covered in proportion to its target
(a per-node row in `coverage_targets`, else the agent's `target_docs_per_node`), capped at 100 %.
The overall figure caps each node at its target before summing, so a large node cannot hide an
empty one. An empty scope has nothing covered: 0 %.

Everything is computed with set-based SQL: one recursive CTE walks the scope, a second builds
the (ancestor, descendant) pairs inside it, and the counts are one GROUP BY over those pairs, so
the number of queries does not grow with the size of the taxonomy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from agent_growth.errors import AgentNotFound, InvalidInput

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5
"""A node below half its target is reported as a gap."""

_AGENT_SQL = text(
    """
    SELECT taxonomy_node_ids, taxonomy_version, target_docs_per_node, min_confidence
    FROM agents WHERE id = :agent_id
    """
)

# The scope of some nodes: they seed the walk, and children must share their taxonomy version, so
# a node of another version hung below a scope node stays out. UNION (not UNION ALL) drops nodes
# reached twice, when an agent names a node and one of its ancestors.
_SCOPE_CTE = """
    WITH RECURSIVE scope(id) AS (
        SELECT n.id FROM taxonomy_nodes n
        WHERE n.id = ANY(CAST(:node_ids AS uuid[])) AND n.version = :version
        UNION
        SELECT child.id FROM taxonomy_nodes child
        JOIN scope ON child.parent_id = scope.id
        WHERE child.version = :version
    )
"""

_SCOPE_SQL = text(
    _SCOPE_CTE
    + """
    SELECT n.id, n.key, n.path, COALESCE(t.target_docs, :default_target) AS target
    FROM scope
    JOIN taxonomy_nodes n ON n.id = scope.id
    LEFT JOIN coverage_targets t ON t.agent_id = :agent_id AND t.node_id = n.id
    ORDER BY n.key
    """
)

_SCOPE_IDS_SQL = text(_SCOPE_CTE + "SELECT id FROM scope")

# The scope nodes that a list of references names, each by key or by id written as text.
_SCOPE_NODES_NAMED_SQL = text(
    _SCOPE_CTE
    + """
    SELECT n.id, n.key FROM scope JOIN taxonomy_nodes n ON n.id = scope.id
    WHERE n.key = ANY(CAST(:refs AS text[])) OR CAST(n.id AS text) = ANY(CAST(:refs AS text[]))
    """
)

# Each of some nodes paired with itself and every descendant in its version.
_CLOSURE_CTE = """
    WITH RECURSIVE closure(ancestor, descendant) AS (
        SELECT id, id FROM unnest(CAST(:scope_ids AS uuid[])) AS scope(id)
        UNION
        SELECT closure.ancestor, child.id FROM taxonomy_nodes child
        JOIN closure ON child.parent_id = closure.descendant
        WHERE child.version = :version
    )
"""

# A document labelled on two nodes of one subtree is still counted once for that subtree's root
# (COUNT DISTINCT).
_COUNTS_SQL = text(
    _CLOSURE_CTE
    + """,
    labelled AS (
        SELECT closure.ancestor, dt.document_id
        FROM closure
        JOIN doc_taxonomy dt ON dt.node_id = closure.descendant
        WHERE dt.confidence >= :min_confidence
    ),
    scope_documents AS (SELECT DISTINCT document_id FROM labelled)
    SELECT ancestor, COUNT(DISTINCT document_id) AS documents, NULL::bigint AS chunks
    FROM labelled GROUP BY ancestor
    UNION ALL
    SELECT NULL,
        (SELECT COUNT(*) FROM scope_documents),
        (SELECT COUNT(*) FROM scope_documents s JOIN chunks c ON c.document_id = s.document_id)
    """
)


# The documents of each node's subtree, without the scope's totals that coverage needs.
_NODE_DOCUMENTS_SQL = text(
    _CLOSURE_CTE
    + """
    SELECT closure.ancestor, COUNT(DISTINCT dt.document_id) AS documents
    FROM closure
    JOIN doc_taxonomy dt ON dt.node_id = closure.descendant
    WHERE dt.confidence >= :min_confidence
    GROUP BY closure.ancestor
    """
)


@dataclass(frozen=True)
class Gap:
    node_id: uuid.UUID
    node_key: str
    path: str
    documents: int
    target: int
    coverage: float
    missing_docs: int
    recommendation: str


@dataclass(frozen=True)
class CoverageResult:
    agent_id: uuid.UUID
    overall_coverage: float
    node_coverage: dict[str, float]
    """Percent per node key, 0 to 100, rounded to 2 decimals."""
    document_counts: dict[str, int]
    target_counts: dict[str, int]
    total_documents: int
    total_chunks: int
    gaps: list[Gap]
    version: str
    """The taxonomy version of the agent's scope."""
    calculated_at: dt.datetime

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ids as strings, the time in ISO 8601."""
        return {
            "agent_id": str(self.agent_id),
            "overall_coverage": self.overall_coverage,
            "node_coverage": dict(self.node_coverage),
            "document_counts": dict(self.document_counts),
            "target_counts": dict(self.target_counts),
            "total_documents": self.total_documents,
            "total_chunks": self.total_chunks,
            "gaps": [{**dataclasses.asdict(gap), "node_id": str(gap.node_id)} for gap in self.gaps],
            "version": self.version,
            "calculated_at": self.calculated_at.isoformat(),
        }

    def node_summary(self) -> dict[str, dict[str, float | int]]:
        """Per node key `{"documents", "target", "coverage"}`, the shape of coverage_history."""
        return {
            key: {
                "documents": self.document_counts[key],
                "target": self.target_counts[key],
                "coverage": coverage,
            }
            for key, coverage in self.node_coverage.items()
        }


@dataclass(frozen=True, kw_only=True)
class _Agent:
    agent_id: uuid.UUID
    node_ids: list[uuid.UUID]
    version: str
    default_target: int
    min_confidence: float


@dataclass(frozen=True, kw_only=True)
class _ScopeNode:
    node_id: uuid.UUID
    key: str
    path: str
    target: int


@dataclass(frozen=True, kw_only=True)
class _Counts:
    documents_by_id: dict[uuid.UUID, int]
    """Distinct documents at or below each scope node; a node without any is absent."""
    total_documents: int
    total_chunks: int


async def compute_coverage(
    session: AsyncSession,
    agent_id: uuid.UUID,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    progress: Callable[[int], Awaitable[None]] | None = None,
) -> CoverageResult:
    """Coverage of one agent's scope now; reports 25 after resolving the scope, 75 after counting.

    Only reads, in at most three queries whatever the size of the scope; the caller owns the
    transaction.
    """
    if not 0 <= threshold <= 1:
        raise InvalidInput("threshold", f"{threshold} is outside [0, 1]; 0.5 means half the target")

    agent = await _load_agent(session, agent_id)
    scope = await _load_scope(session, agent)
    if progress is not None:
        await progress(25)

    counts = await _count_documents(session, agent=agent, scope=scope)
    if progress is not None:
        await progress(75)

    result = _assemble(agent=agent, scope=scope, counts=counts, threshold=threshold)
    logger.debug(
        "Coverage of agent %s: %.2f%% over %d nodes, %d gaps",
        agent_id,
        result.overall_coverage,
        len(scope),
        len(result.gaps),
    )
    return result


async def _load_agent(session: AsyncSession, agent_id: uuid.UUID) -> _Agent:
    row = (await session.execute(_AGENT_SQL, {"agent_id": agent_id})).one_or_none()
    if row is None:
        raise AgentNotFound(agent_id)
    return _Agent(
        agent_id=agent_id,
        node_ids=list(row.taxonomy_node_ids),
        version=row.taxonomy_version,
        default_target=row.target_docs_per_node,
        min_confidence=row.min_confidence,
    )


async def _load_scope(session: AsyncSession, agent: _Agent) -> list[_ScopeNode]:
    """The agent's scope nodes by key, each with its target."""
    rows = await session.execute(
        _SCOPE_SQL,
        {
            "node_ids": agent.node_ids,
            "version": agent.version,
            "default_target": agent.default_target,
            "agent_id": agent.agent_id,
        },
    )
    return [
        _ScopeNode(node_id=row.id, key=row.key, path=row.path, target=row.target) for row in rows
    ]


async def _count_documents(
    session: AsyncSession, *, agent: _Agent, scope: list[_ScopeNode]
) -> _Counts:
    if not scope:
        return _Counts(documents_by_id={}, total_documents=0, total_chunks=0)

    rows = await session.execute(
        _COUNTS_SQL,
        {
            "scope_ids": [node.node_id for node in scope],
            "version": agent.version,
            "min_confidence": agent.min_confidence,
        },
    )
    documents_by_id: dict[uuid.UUID, int] = {}
    total_documents = total_chunks = 0
    for ancestor, documents, chunks in rows:
        # The one row without an ancestor carries the totals over the whole scope.
        if ancestor is None:
            total_documents, total_chunks = documents, chunks
        else:
            documents_by_id[ancestor] = documents
    return _Counts(
        documents_by_id=documents_by_id,
        total_documents=total_documents,
        total_chunks=total_chunks,
    )


async def documents_per_node(
    session: AsyncSession, *, version: str, node_ids: list[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """`doc[n]` of the coverage definition for each node at any confidence: distinct documents
    labelled with it or with a node below it. Nodes without any are left out."""
    if not node_ids:
        return {}
    rows = await session.execute(
        _NODE_DOCUMENTS_SQL, {"scope_ids": node_ids, "version": version, "min_confidence": 0.0}
    )
    return {ancestor: documents for ancestor, documents in rows}


def _assemble(
    *, agent: _Agent, scope: list[_ScopeNode], counts: _Counts, threshold: float
) -> CoverageResult:
    node_coverage: dict[str, float] = {}
    document_counts: dict[str, int] = {}
    target_counts: dict[str, int] = {}
    gaps: list[Gap] = []
    for node in scope:
        key, target = node.key, node.target
        documents = counts.documents_by_id.get(node.node_id, 0)
        coverage = round(min(documents / target, 1.0) * 100, 2)
        node_coverage[key], document_counts[key], target_counts[key] = coverage, documents, target
        # Compared on exact counts: the percent is rounded for display only.
        if documents < threshold * target:
            gaps.append(
                _gap(node.node_id, key=key, path=node.path, documents=documents, target=target)
            )
    gaps.sort(key=lambda gap: (-gap.missing_docs, gap.node_key))

    capped = sum(min(document_counts[key], target_counts[key]) for key in target_counts)
    wanted = sum(target_counts.values())
    return CoverageResult(
        agent_id=agent.agent_id,
        overall_coverage=round(capped / wanted * 100, 2) if wanted else 0.0,
        node_coverage=node_coverage,
        document_counts=document_counts,
        target_counts=target_counts,
        total_documents=counts.total_documents,
        total_chunks=counts.total_chunks,
        gaps=gaps,
        version=agent.version,
        calculated_at=dt.datetime.now(dt.UTC),
    )


def _gap(node_id: uuid.UUID, *, key: str, path: str, documents: int, target: int) -> Gap:
    missing = target - documents
    noun = "document" if missing == 1 else "documents"
    return Gap(
        node_id=node_id,
        node_key=key,
        path=path,
        documents=documents,
        target=target,
        coverage=round(documents / target * 100, 2),
        missing_docs=missing,
        recommendation=f"Add {missing} {noun} about {path} ({documents} of {target} so far).",
    )


async def scope_node_ids(
    session: AsyncSession, *, version: str, node_ids: list[uuid.UUID]
) -> list[uuid.UUID]:
    """The scope of `node_ids` as coverage counts it: those nodes of taxonomy `version` and all
    their descendants in that version."""
    if not node_ids:
        return []
    rows = await session.execute(_SCOPE_IDS_SQL, {"node_ids": list(node_ids), "version": version})
    return list(rows.scalars())


async def scope_nodes_named(
    session: AsyncSession, *, version: str, node_ids: list[uuid.UUID], refs: list[str]
) -> dict[uuid.UUID, str]:
    """Key by id of the nodes in the scope of `node_ids` that `refs` name, by key or by id.

    The scope is as for coverage: the nodes of taxonomy `version` among `node_ids` and all their
    descendants in that version. An id in `refs` must be written in canonical lowercase form.
    """
    if not node_ids or not refs:
        return {}
    rows = await session.execute(
        _SCOPE_NODES_NAMED_SQL, {"node_ids": list(node_ids), "version": version, "refs": refs}
    )
    return {row.id: row.key for row in rows}


async def taxonomy_versions(session: AsyncSession) -> list[str]:
    """The taxonomy versions that have nodes, in order."""
    rows = await session.execute(text("SELECT DISTINCT version FROM taxonomy_nodes ORDER BY 1"))
    return list(rows.scalars())


def unknown_version_message(version: str, known: list[str]) -> str | None:
    """What to tell a client who named taxonomy `version`; None when it exists."""
    if version in known:
        return None
    there_are = ", ".join(repr(v) for v in known) or "none: load a corpus first"
    return f"no taxonomy version {version!r}; there are {there_are}"


async def find_unknown_nodes(
    session: AsyncSession, *, version: str, node_ids: list[uuid.UUID]
) -> list[uuid.UUID]:
    """The ids among `node_ids` that are not nodes of taxonomy `version`, in the given order."""
    if not node_ids:
        return []
    rows = await session.execute(
        text(
            "SELECT id FROM taxonomy_nodes"
            " WHERE version = :version AND id = ANY(CAST(:node_ids AS uuid[]))"
        ),
        {"version": version, "node_ids": list(node_ids)},
    )
    known = set(rows.scalars())
    return [node_id for node_id in dict.fromkeys(node_ids) if node_id not in known]


async def node_ids_for_keys(
    session: AsyncSession, *, version: str, keys: list[str]
) -> tuple[list[uuid.UUID], list[str]]:
    """Ids of the nodes with these keys in taxonomy `version`, and the keys that have none."""
    if not keys:
        return [], []
    rows = await session.execute(
        text(
            "SELECT key, id FROM taxonomy_nodes"
            " WHERE version = :version AND key = ANY(CAST(:keys AS text[]))"
        ),
        {"version": version, "keys": list(keys)},
    )
    by_key: dict[str, uuid.UUID] = {row.key: row.id for row in rows}
    unique_keys = list(dict.fromkeys(keys))
    found = [by_key[key] for key in unique_keys if key in by_key]
    unknown = [key for key in unique_keys if key not in by_key]
    return found, unknown
