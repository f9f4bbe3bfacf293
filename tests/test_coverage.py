"""The coverage definition, against small taxonomies inserted by hand into real PostgreSQL.

Most tests share one forest, version "1" (confidence of each label in brackets):

    A                  d6 [1.0]
    +-- A.x            d2 [1.0]
    |   +-- A.x.i      d1 [1.0], d2 [0.9]
    +-- A.y            d3 [1.0], d4 [0.5]
    +-- A.old (version "2", hung below A by mistake)   d7 [1.0]
    B
    +-- B.z            d5 [1.0]

Chunks per document: d1 2, d2 1, d3 3, d4 5, d5 1, d6 0, d7 4.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from agent_growth import coverage
from agent_growth.db.models import (
    Agent,
    Chunk,
    CoverageTarget,
    DocTaxonomy,
    Document,
    TaxonomyNode,
)
from agent_growth.errors import AgentNotFound, InvalidInput


@dataclass
class Corpus:
    nodes: dict[str, uuid.UUID] = field(default_factory=dict)
    documents: dict[str, uuid.UUID] = field(default_factory=dict)


async def add_nodes(
    session: AsyncSession, corpus: Corpus, *, version: str, parents: dict[str, str | None]
) -> None:
    """Nodes keyed by name with their parent's name, parents listed first."""
    for key, parent in parents.items():
        node_id = uuid.uuid4()
        corpus.nodes[key] = node_id
        session.add(
            TaxonomyNode(
                id=node_id,
                version=version,
                key=key,
                parent_id=corpus.nodes[parent] if parent else None,
                label=key.rsplit(".", 1)[-1],
                path=key.replace(".", " / "),
                level=key.count(".") + 1,
            )
        )
        await session.flush()


async def add_document(
    session: AsyncSession, corpus: Corpus, name: str, *, chunks: int, labels: dict[str, float]
) -> None:
    document_id = uuid.uuid4()
    corpus.documents[name] = document_id
    session.add(Document(id=document_id, external_id=name, title=name, char_count=100))
    await session.flush()
    for ordinal in range(chunks):
        session.add(Chunk(document_id=document_id, ordinal=ordinal, text="x", char_count=1))
    for key, confidence in labels.items():
        session.add(
            DocTaxonomy(document_id=document_id, node_id=corpus.nodes[key], confidence=confidence)
        )
    await session.flush()


async def add_agent(
    session: AsyncSession,
    corpus: Corpus,
    *,
    keys: list[str],
    version: str = "1",
    target: int = 4,
    min_confidence: float = 0.7,
) -> uuid.UUID:
    agent = Agent(
        name="test agent",
        taxonomy_node_ids=[corpus.nodes[key] for key in keys],
        taxonomy_version=version,
        target_docs_per_node=target,
        min_confidence=min_confidence,
    )
    session.add(agent)
    await session.commit()
    return agent.id


@pytest.fixture
async def forest(session: AsyncSession) -> Corpus:
    corpus = Corpus()
    await add_nodes(
        session,
        corpus,
        version="1",
        parents={"A": None, "A.x": "A", "A.x.i": "A.x", "A.y": "A", "B": None, "B.z": "B"},
    )
    await add_nodes(session, corpus, version="2", parents={"A.old": "A"})
    await add_document(session, corpus, "d1", chunks=2, labels={"A.x.i": 1.0})
    await add_document(session, corpus, "d2", chunks=1, labels={"A.x": 1.0, "A.x.i": 0.9})
    await add_document(session, corpus, "d3", chunks=3, labels={"A.y": 1.0})
    await add_document(session, corpus, "d4", chunks=5, labels={"A.y": 0.5})
    await add_document(session, corpus, "d5", chunks=1, labels={"B.z": 1.0})
    await add_document(session, corpus, "d6", chunks=0, labels={"A": 1.0})
    await add_document(session, corpus, "d7", chunks=4, labels={"A.old": 1.0})
    await session.commit()
    return corpus


async def test_documents_roll_up_to_ancestors_and_count_once(
    session: AsyncSession, forest: Corpus
) -> None:
    agent_id = await add_agent(session, forest, keys=["A"])

    result = await coverage.compute_coverage(session, agent_id)

    # A.x.i: d1, d2. A.x: d2 (own label) plus d1, d2 below it = 2, d2 counted once.
    # A.y: d3 only (d4 is under the 0.7 bar). A: d6 plus d1, d2, d3 = 4.
    assert result.document_counts == {"A": 4, "A.x": 2, "A.x.i": 2, "A.y": 1}
    assert result.target_counts == {"A": 4, "A.x": 4, "A.x.i": 4, "A.y": 4}
    assert result.node_coverage == {"A": 100.0, "A.x": 50.0, "A.x.i": 50.0, "A.y": 25.0}
    # (4 + 2 + 2 + 1) / (4 * 4) = 9 / 16
    assert result.overall_coverage == 56.25
    # d1, d2, d3, d6; their chunks 2 + 1 + 3 + 0.
    assert result.total_documents == 4
    assert result.total_chunks == 6
    assert result.version == "1"


async def test_a_node_of_another_version_below_the_scope_is_ignored(
    session: AsyncSession, forest: Corpus
) -> None:
    agent_id = await add_agent(session, forest, keys=["A"])

    result = await coverage.compute_coverage(session, agent_id)

    # A.old (version 2) hangs below A, but neither it nor its d7 counts for a version-1 agent.
    assert "A.old" not in result.node_coverage
    assert result.document_counts["A"] == 4
    assert result.total_chunks == 6


async def test_agent_nodes_of_another_version_give_an_empty_scope(
    session: AsyncSession, forest: Corpus
) -> None:
    agent_id = await add_agent(session, forest, keys=["A", "B"], version="2")

    result = await coverage.compute_coverage(session, agent_id)

    assert result.node_coverage == {}
    assert result.overall_coverage == 0.0
    assert (result.total_documents, result.total_chunks, result.gaps) == (0, 0, [])


async def test_an_agent_without_nodes_has_zero_coverage(
    session: AsyncSession, forest: Corpus
) -> None:
    agent_id = await add_agent(session, forest, keys=[])

    result = await coverage.compute_coverage(session, agent_id)

    assert (result.overall_coverage, result.node_coverage, result.gaps) == (0.0, {}, [])


async def test_labels_below_the_confidence_bar_do_not_count(
    session: AsyncSession, forest: Corpus
) -> None:
    lenient = await add_agent(session, forest, keys=["A"], min_confidence=0.5)
    strict = await add_agent(session, forest, keys=["A"], min_confidence=0.95)

    lenient_result = await coverage.compute_coverage(session, lenient)
    strict_result = await coverage.compute_coverage(session, strict)

    # At 0.5 (inclusive) d4 joins A.y and A: A.y 2, A 5 (capped at 4 overall).
    # Overall (4 + 2 + 2 + 2) / 16 = 62.5; d4 brings its 5 chunks.
    assert lenient_result.document_counts == {"A": 5, "A.x": 2, "A.x.i": 2, "A.y": 2}
    assert lenient_result.overall_coverage == 62.5
    assert lenient_result.total_chunks == 11
    # At 0.95 d2's 0.9 label on A.x.i drops, but d2 still reaches A.x through its own label.
    assert strict_result.document_counts == {"A": 4, "A.x": 2, "A.x.i": 1, "A.y": 1}


async def test_a_per_node_target_overrides_the_agent_default(
    session: AsyncSession, forest: Corpus
) -> None:
    agent_id = await add_agent(session, forest, keys=["A"])
    session.add(CoverageTarget(agent_id=agent_id, node_id=forest.nodes["A.y"], target_docs=1))
    session.add(CoverageTarget(agent_id=agent_id, node_id=forest.nodes["A.x"], target_docs=3))
    await session.commit()

    result = await coverage.compute_coverage(session, agent_id)

    assert result.target_counts == {"A": 4, "A.x": 3, "A.x.i": 4, "A.y": 1}
    # A.y: 1 of 1 = 100. A.x: 2 of 3 = 66.666... -> 66.67.
    assert result.node_coverage["A.y"] == 100.0
    assert result.node_coverage["A.x"] == 66.67
    # (4 + 2 + 2 + 1) / (4 + 3 + 4 + 1) = 9 / 12 = 75
    assert result.overall_coverage == 75.0


async def test_overall_coverage_is_rounded_to_two_decimals(
    session: AsyncSession, forest: Corpus
) -> None:
    agent_id = await add_agent(session, forest, keys=["A"])
    session.add(CoverageTarget(agent_id=agent_id, node_id=forest.nodes["A.y"], target_docs=1))
    await session.commit()

    result = await coverage.compute_coverage(session, agent_id)

    # (4 + 2 + 2 + 1) / (4 + 4 + 4 + 1) = 9 / 13 = 69.2307...
    assert result.overall_coverage == 69.23


async def test_gaps_are_nodes_below_the_threshold_most_missing_first(
    session: AsyncSession, forest: Corpus
) -> None:
    agent_id = await add_agent(session, forest, keys=["A"])

    default = await coverage.compute_coverage(session, agent_id)
    demanding = await coverage.compute_coverage(session, agent_id, threshold=0.75)

    # Threshold 0.5 of 4 is 2 documents: only A.y (1) is below; A.x and A.x.i have exactly 2.
    assert [(gap.node_key, gap.missing_docs) for gap in default.gaps] == [("A.y", 3)]
    gap = default.gaps[0]
    assert (gap.node_id, gap.documents, gap.target, gap.coverage) == (
        forest.nodes["A.y"],
        1,
        4,
        25.0,
    )
    assert "3" in gap.recommendation and gap.path in gap.recommendation
    # Threshold 0.75 is 3 documents: A.y misses 3, then A.x and A.x.i miss 2 each, by key.
    assert [(gap.node_key, gap.missing_docs) for gap in demanding.gaps] == [
        ("A.y", 3),
        ("A.x", 2),
        ("A.x.i", 2),
    ]


async def test_no_documents_means_zero_coverage_and_every_node_a_gap(
    session: AsyncSession,
) -> None:
    corpus = Corpus()
    await add_nodes(session, corpus, version="1", parents={"C": None, "C.a": "C"})
    agent_id = await add_agent(session, corpus, keys=["C"], target=5)

    result = await coverage.compute_coverage(session, agent_id)

    assert result.overall_coverage == 0.0
    assert result.node_coverage == {"C": 0.0, "C.a": 0.0}
    assert [(gap.node_key, gap.missing_docs) for gap in result.gaps] == [("C", 5), ("C.a", 5)]
    assert (result.total_documents, result.total_chunks) == (0, 0)


async def test_an_agent_naming_a_node_and_its_ancestor_counts_the_node_once(
    session: AsyncSession, forest: Corpus
) -> None:
    agent_id = await add_agent(session, forest, keys=["A", "A.x"])

    result = await coverage.compute_coverage(session, agent_id)

    assert sorted(result.node_coverage) == ["A", "A.x", "A.x.i", "A.y"]
    assert result.overall_coverage == 56.25


async def test_two_top_nodes_combine_their_subtrees(session: AsyncSession, forest: Corpus) -> None:
    agent_id = await add_agent(session, forest, keys=["A", "B"], target=2)

    result = await coverage.compute_coverage(session, agent_id)

    # Capped at 2 each: A 2, A.x 2, A.x.i 2, A.y 1, B 1, B.z 1 = 9 of 12.
    assert result.document_counts["B"] == 1
    assert result.overall_coverage == 75.0
    # d1, d2, d3, d5, d6 with 2 + 1 + 3 + 1 + 0 chunks.
    assert (result.total_documents, result.total_chunks) == (5, 7)


async def test_counts_match_a_direct_roll_up_on_a_random_forest(session: AsyncSession) -> None:
    rng = random.Random(7)
    corpus = Corpus()
    parents: dict[str, str | None] = {}
    for index in range(40):
        candidates = [key for key in parents if key.count(".") < 3]
        parent = rng.choice(candidates) if candidates and rng.random() < 0.8 else None
        parents[f"{parent}.n{index}" if parent else f"n{index}"] = parent
    await add_nodes(session, corpus, version="1", parents=parents)
    labels_of: dict[str, dict[str, float]] = {}
    for index in range(120):
        keys = rng.sample(sorted(parents), rng.randint(1, 3))
        labels_of[f"doc{index}"] = {key: rng.choice([0.3, 0.7, 0.8, 1.0]) for key in keys}
        await add_document(
            session, corpus, f"doc{index}", chunks=1, labels=labels_of[f"doc{index}"]
        )
    roots = [key for key, parent in parents.items() if parent is None][:3]
    agent_id = await add_agent(session, corpus, keys=roots, target=6)

    result = await coverage.compute_coverage(session, agent_id)

    def under(key: str, root: str) -> bool:
        return key == root or key.startswith(root + ".")

    expected_scope = {key for key in parents if any(under(key, root) for root in roots)}
    expected_counts = {
        node: sum(
            any(under(key, node) and conf >= 0.7 for key, conf in labels.items())
            for labels in labels_of.values()
        )
        for node in expected_scope
    }
    assert result.document_counts == expected_counts
    assert result.total_documents == sum(
        any(key in expected_scope and conf >= 0.7 for key, conf in labels.items())
        for labels in labels_of.values()
    )


async def test_progress_is_reported_after_the_scope_and_after_counting(
    session: AsyncSession, forest: Corpus
) -> None:
    agent_id = await add_agent(session, forest, keys=["A"])
    reported: list[int] = []

    async def progress(percent: int) -> None:
        reported.append(percent)

    await coverage.compute_coverage(session, agent_id, progress=progress)

    assert reported == [25, 75]


async def test_the_result_serialises_to_json(session: AsyncSession, forest: Corpus) -> None:
    agent_id = await add_agent(session, forest, keys=["A"])

    result = await coverage.compute_coverage(session, agent_id)
    body = json.loads(json.dumps(result.as_dict()))

    assert body["agent_id"] == str(agent_id)
    assert body["gaps"][0]["node_id"] == str(forest.nodes["A.y"])
    assert result.calculated_at.utcoffset() is not None
    assert body["calculated_at"] == result.calculated_at.isoformat()
    assert result.node_summary()["A.y"] == {"documents": 1, "target": 4, "coverage": 25.0}


async def test_an_unknown_agent_is_reported(session: AsyncSession) -> None:
    with pytest.raises(AgentNotFound):
        await coverage.compute_coverage(session, uuid.uuid4())


async def test_a_threshold_outside_zero_to_one_is_refused(
    session: AsyncSession, forest: Corpus
) -> None:
    agent_id = await add_agent(session, forest, keys=["A"])

    with pytest.raises(InvalidInput) as caught:
        await coverage.compute_coverage(session, agent_id, threshold=50)

    assert caught.value.field == "threshold"


async def test_unknown_node_ids_and_keys_are_named(session: AsyncSession, forest: Corpus) -> None:
    stranger = uuid.uuid4()

    unknown_ids = await coverage.find_unknown_nodes(
        session, version="1", node_ids=[forest.nodes["A"], stranger, forest.nodes["A.old"]]
    )
    found, unknown_keys = await coverage.node_ids_for_keys(
        session, version="1", keys=["B.z", "nope", "A", "A.old"]
    )

    # A.old exists, but in version 2.
    assert unknown_ids == [stranger, forest.nodes["A.old"]]
    assert found == [forest.nodes["B.z"], forest.nodes["A"]]
    assert unknown_keys == ["nope", "A.old"]


async def test_scope_nodes_are_named_by_key_or_id_within_the_scope(
    session: AsyncSession, forest: Corpus
) -> None:
    named = await coverage.scope_nodes_named(
        session,
        version="1",
        node_ids=[forest.nodes["A.x"], forest.nodes["B"]],
        refs=["A.x.i", str(forest.nodes["B.z"]), "A.y", "A.old", "nope"],
    )

    # A.y is a node of version 1, but outside the scope of A.x and B; A.old is of version 2.
    assert named == {forest.nodes["A.x.i"]: "A.x.i", forest.nodes["B.z"]: "B.z"}


async def test_coverage_takes_three_queries_whatever_the_size_of_the_scope(
    session: AsyncSession, forest: Corpus
) -> None:
    small = await add_agent(session, forest, keys=["B"])
    large = await add_agent(session, forest, keys=["A", "B"])
    statements: list[str] = []

    def note(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    assert isinstance(session.bind, AsyncEngine)
    engine = session.bind.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        for agent_id in (small, large):
            await coverage.compute_coverage(session, agent_id)
    finally:
        event.remove(engine, "before_cursor_execute", note)

    assert len(statements) == 6
