"""How long loading the full corpus and computing coverage take, and how much memory they use.

Loads the full Wikispeedia corpus into a benchmark database (its corpus and agent tables are
emptied first), then times `compute_coverage` for two agents: one whose scope is three large
subtrees (Science, Geography, History: 59 nodes) and one over the whole taxonomy (all 15
top-level nodes: 145 nodes). Prints figures; asserts nothing.

Usage: python bench/bench_coverage.py [CORPUS_DIR] [--database-url URL] [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
import uuid
from pathlib import Path

import psycopg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from agent_growth import corpus, coverage
from agent_growth.db import engine as db_engine
from agent_growth.db import migrate
from agent_growth.db.models import Agent, TaxonomyNode

ROOT = Path(__file__).resolve().parents[1]
# The full corpus sits beside the checkout on the development machines; elsewhere the bundled
# trimmed copy (every document and label, shorter texts) stands in.
FULL_CORPUS = ROOT.parent / "shared" / "data" / "wikispeedia"
DEFAULT_CORPUS = FULL_CORPUS if FULL_CORPUS.is_dir() else ROOT / "data" / "wikispeedia"
DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/agent_growth_bench_coverage"
LARGE_SUBTREES = ("Science", "Geography", "History")
WARMUP_RUNS = 2


def peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare_database(database_url: str) -> None:
    db_engine.ensure_database(database_url)
    migrate.upgrade(database_url)
    with psycopg.connect(db_engine.psycopg_dsn(database_url), autocommit=True) as conn:
        conn.execute("TRUNCATE taxonomy_nodes, documents, agents CASCADE")


def analyze(database_url: str) -> None:
    """Fresh planner statistics, as autovacuum would give a database that has settled."""
    with psycopg.connect(db_engine.psycopg_dsn(database_url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE taxonomy_nodes, documents, chunks, doc_taxonomy")


async def time_coverage(database_url: str, *, runs: int) -> None:
    engine = create_async_engine(database_url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async with sessions() as session:
        rows = await session.execute(
            select(TaxonomyNode.key, TaxonomyNode.id).where(
                TaxonomyNode.version == "1", TaxonomyNode.parent_id.is_(None)
            )
        )
        top_nodes = {row.key: row.id for row in rows}
        agents = {
            "three subtrees": Agent(
                name="bench three subtrees",
                taxonomy_node_ids=[top_nodes[key] for key in LARGE_SUBTREES],
                taxonomy_version="1",
                target_docs_per_node=20,
            ),
            "whole taxonomy": Agent(
                name="bench whole taxonomy",
                taxonomy_node_ids=list(top_nodes.values()),
                taxonomy_version="1",
                target_docs_per_node=20,
            ),
        }
        session.add_all(agents.values())
        await session.commit()

    for name, agent in agents.items():
        durations_ms = await _runs(sessions, agent.id, runs=runs)
        async with sessions() as session:
            result = await coverage.compute_coverage(session, agent.id)
        p95_ms = statistics.quantiles(durations_ms, n=20, method="inclusive")[18]
        print(
            f"coverage, {name}: {len(result.node_coverage)} nodes, {result.total_documents}"
            f" documents, {result.total_chunks} chunks, overall {result.overall_coverage}%,"
            f" {len(result.gaps)} gaps"
        )
        print(
            f"  {runs} runs: median {statistics.median(durations_ms):.1f} ms,"
            f" p95 {p95_ms:.1f} ms, min {min(durations_ms):.1f} ms, max {max(durations_ms):.1f} ms"
        )
    await engine.dispose()


async def _runs(
    sessions: async_sessionmaker[AsyncSession], agent_id: uuid.UUID, *, runs: int
) -> list[float]:
    durations_ms = []
    for run in range(WARMUP_RUNS + runs):
        # A session per run, as the worker opens one per task.
        async with sessions() as session:
            started = time.perf_counter()
            await coverage.compute_coverage(session, agent_id)
            elapsed_ms = (time.perf_counter() - started) * 1000
        if run >= WARMUP_RUNS:
            durations_ms.append(elapsed_ms)
    return durations_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus_dir", type=Path, nargs="?", default=DEFAULT_CORPUS)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    print(f"corpus: {args.corpus_dir}")
    prepare_database(args.database_url)
    first = corpus.load_corpus(args.corpus_dir, database_url=args.database_url, progress=False)
    print(f"load: {first.summary()}")
    again = corpus.load_corpus(args.corpus_dir, database_url=args.database_url, progress=False)
    print(f"load again (adds nothing): {again.duration_s:.2f} s")
    print(f"peak RSS after loading: {peak_rss_mb():.0f} MB")

    analyze(args.database_url)
    asyncio.run(time_coverage(args.database_url, runs=args.runs))
    print(f"peak RSS at the end: {peak_rss_mb():.0f} MB (this process; PostgreSQL not included)")


if __name__ == "__main__":
    main()
