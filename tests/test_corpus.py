"""Loading a corpus directory into real PostgreSQL.

The fixture `tests/fixtures/tiny_corpus` has 6 nodes on 3 levels (Animals > Mammals > Cats,
Animals > Birds, Places > Rivers) and 12 documents in `documents.jsonl.gz`, with 1 or 2 labels
each (15 labels). Their paragraphs are 30 to 782 characters long, except Lion's first paragraph
(1,222 characters) and Whale's list of two items on their own lines.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agent_growth import corpus
from agent_growth.db import engine as db_engine
from agent_growth.errors import InvalidInput

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_corpus"


def fixture_documents() -> list[dict[str, Any]]:
    with gzip.open(FIXTURE / "documents.jsonl.gz", "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def fixture_nodes() -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = json.loads((FIXTURE / "taxonomy.json").read_text())
    return nodes


def query(database_url: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_engine.psycopg_dsn(database_url)) as conn:
        return conn.execute(sql, params).fetchall()


def without_spaces(text: str) -> str:
    return "".join(text.split())


def empty_corpus_tables(database_url: str) -> None:
    with psycopg.connect(db_engine.psycopg_dsn(database_url)) as conn:
        conn.execute("TRUNCATE taxonomy_nodes, documents CASCADE")


def table_counts(database_url: str) -> dict[str, int]:
    tables = ("taxonomy_nodes", "documents", "chunks", "doc_taxonomy")
    return {table: query(database_url, f"SELECT count(*) FROM {table}")[0][0] for table in tables}


def write_corpus(
    directory: Path, *, nodes: list[dict[str, Any]], document_lines: list[str]
) -> Path:
    """A plain-text corpus: one node per line in taxonomy.json, so that line numbers are known."""
    directory.mkdir(exist_ok=True)
    node_lines = ",\n".join(json.dumps(node) for node in nodes)
    (directory / "taxonomy.json").write_text(f"[\n{node_lines}\n]\n")
    (directory / "documents.jsonl").write_text("".join(line + "\n" for line in document_lines))
    return directory


def test_loading_writes_every_node_document_chunk_and_label(database_url: str) -> None:
    report = corpus.load_corpus(FIXTURE, database_url=database_url, progress=False)

    documents = fixture_documents()
    assert (report.nodes_added, report.documents_added, report.labels_added) == (6, 12, 15)
    counts = table_counts(database_url)
    assert counts["taxonomy_nodes"] == 6
    assert counts["documents"] == len(documents)
    assert counts["doc_taxonomy"] == sum(len(document["node_ids"]) for document in documents)
    assert counts["chunks"] == report.chunks_added
    assert report.chunks_added >= len(documents)

    cats = query(
        database_url,
        "SELECT n.id, p.key, n.path, n.level FROM taxonomy_nodes n"
        " JOIN taxonomy_nodes p ON p.id = n.parent_id WHERE n.key = 'Animals.Mammals.Cats'",
    )
    assert cats == [
        (
            corpus.node_uuid("1", "Animals.Mammals.Cats"),
            "Animals.Mammals",
            "Animals / Mammals / Cats",
            3,
        )
    ]
    cafe = query(
        database_url,
        "SELECT id, title, url, char_count FROM documents WHERE external_id = %s",
        "Caf%C3%A9_cat",
    )
    expected = next(document for document in documents if document["id"] == "Caf%C3%A9_cat")
    assert cafe == [
        (corpus.document_uuid("Caf%C3%A9_cat"), "Café cat", expected["url"], len(expected["text"]))
    ]
    assert query(database_url, "SELECT DISTINCT confidence FROM doc_taxonomy") == [(1.0,)]


def test_loading_twice_adds_nothing(database_url: str) -> None:
    corpus.load_corpus(FIXTURE, database_url=database_url, progress=False)
    before = table_counts(database_url)
    chunk_ids = query(database_url, "SELECT id FROM chunks ORDER BY id")

    again = corpus.load_corpus(FIXTURE, database_url=database_url, progress=False)

    assert (again.nodes_added, again.documents_added, again.chunks_added, again.labels_added) == (
        0,
        0,
        0,
        0,
    )
    assert again.documents_selected == 12
    assert table_counts(database_url) == before
    assert query(database_url, "SELECT id FROM chunks ORDER BY id") == chunk_ids


def test_a_plain_jsonl_file_loads_like_the_gzip_one(database_url: str, tmp_path: Path) -> None:
    shutil.copy(FIXTURE / "taxonomy.json", tmp_path / "taxonomy.json")
    with gzip.open(FIXTURE / "documents.jsonl.gz", "rb") as packed:
        (tmp_path / "documents.jsonl").write_bytes(packed.read())

    plain = corpus.load_corpus(tmp_path, database_url=database_url, progress=False)
    plain_counts = table_counts(database_url)
    empty_corpus_tables(database_url)
    packed_report = corpus.load_corpus(FIXTURE, database_url=database_url, progress=False)

    assert plain.documents_added == packed_report.documents_added == 12
    assert table_counts(database_url) == plain_counts


def test_a_larger_fraction_adds_the_rest(database_url: str) -> None:
    half = corpus.load_corpus(FIXTURE, database_url=database_url, fraction=0.5, progress=False)
    half_ids = {row[0] for row in query(database_url, "SELECT external_id FROM documents")}

    rest = corpus.load_corpus(FIXTURE, database_url=database_url, fraction=1.0, progress=False)
    grown = table_counts(database_url)
    all_ids = {row[0] for row in query(database_url, "SELECT external_id FROM documents")}

    assert 0 < half.documents_added < 12
    assert rest.documents_added == 12 - half.documents_added
    assert half_ids < all_ids == {document["id"] for document in fixture_documents()}
    # Loading everything at once gives exactly the same rows.
    empty_corpus_tables(database_url)
    corpus.load_corpus(FIXTURE, database_url=database_url, progress=False)
    assert table_counts(database_url) == grown


def test_the_selection_is_stable_and_grows_with_the_fraction() -> None:
    ids = [f"article-{index}" for index in range(2000)]

    quarter = {external_id for external_id in ids if corpus.is_selected(external_id, 0.25)}
    half = {external_id for external_id in ids if corpus.is_selected(external_id, 0.5)}

    assert quarter < half
    assert 400 < len(quarter) < 600 and 900 < len(half) < 1100
    assert all(corpus.is_selected(external_id, 1.0) for external_id in ids)


def test_chunks_hold_whole_paragraphs_up_to_the_size(database_url: str) -> None:
    corpus.load_corpus(FIXTURE, database_url=database_url, progress=False)

    for document in fixture_documents():
        chunks = [
            row[0]
            for row in query(
                database_url,
                "SELECT c.text FROM chunks c JOIN documents d ON d.id = c.document_id"
                " WHERE d.external_id = %s ORDER BY c.ordinal",
                document["id"],
            )
        ]
        paragraphs = document["text"].split("\n\n")
        assert all(len(chunk) <= corpus.CHUNK_SIZE_CHARS for chunk in chunks), document["id"]
        if all(len(paragraph) <= corpus.CHUNK_SIZE_CHARS for paragraph in paragraphs):
            # Every chunk is a run of whole paragraphs, and together they are the text.
            assert [part for chunk in chunks for part in chunk.split("\n\n")] == paragraphs
        else:
            # Lion: its long first paragraph is cut between two sentences, never inside one.
            assert all(chunk in document["text"] for chunk in chunks)
            assert all(chunk.endswith(".") for chunk in chunks)
            assert without_spaces("".join(chunks)) == without_spaces(document["text"])
    # The fixture has paragraphs that fit together, so some chunk holds more than one.
    packed = query(database_url, "SELECT count(*) FROM chunks WHERE text LIKE %s", "%\n\n%")
    assert packed[0][0] > 0


def test_a_second_taxonomy_version_gets_its_own_nodes_and_labels(database_url: str) -> None:
    corpus.load_corpus(FIXTURE, database_url=database_url, progress=False)

    second = corpus.load_corpus(
        FIXTURE, database_url=database_url, taxonomy_version="2", progress=False
    )

    assert (second.nodes_added, second.documents_added, second.labels_added) == (6, 0, 15)
    assert query(
        database_url,
        "SELECT n.version, count(*) FROM doc_taxonomy t JOIN taxonomy_nodes n ON n.id = t.node_id"
        " GROUP BY n.version ORDER BY n.version",
    ) == [("1", 15), ("2", 15)]


NODES: list[dict[str, Any]] = [
    {"id": "Top", "parent": None, "label": "Top"},
    {"id": "Top.Leaf", "parent": "Top", "label": "Leaf"},
]
GOOD_LINE = json.dumps({"id": "doc1", "title": "One", "text": "Hello.", "node_ids": ["Top.Leaf"]})


@pytest.mark.parametrize(
    ("nodes", "lines", "file", "line", "field", "hint"),
    [
        (
            [*NODES, {"id": "Top.Other", "parent": "Nowhere", "label": "Other"}],
            [GOOD_LINE],
            "taxonomy.json",
            4,
            "parent",
            "Nowhere",
        ),
        (
            [NODES[0], {"id": "Top.Leaf", "parent": "Top"}],
            [GOOD_LINE],
            "taxonomy.json",
            3,
            "label",
            "",
        ),
        (
            [*NODES, {"id": "Top", "parent": None, "label": "Again"}],
            [GOOD_LINE],
            "taxonomy.json",
            4,
            "id",
            "line 2",
        ),
        (
            NODES,
            [GOOD_LINE, json.dumps({"id": "doc2", "text": "Hi.", "node_ids": ["Top"]})],
            "documents.jsonl",
            2,
            "title",
            "",
        ),
        (
            NODES,
            [
                GOOD_LINE,
                "",
                json.dumps({"id": "d3", "title": "T", "text": "x", "node_ids": ["Top.Gone"]}),
            ],
            "documents.jsonl",
            3,
            "node_ids",
            "'Top.Gone'",
        ),
        (
            NODES,
            [GOOD_LINE, json.dumps({"id": "d2", "title": "T", "text": "x", "node_ids": []})],
            "documents.jsonl",
            2,
            "node_ids",
            "",
        ),
        (NODES, [GOOD_LINE, GOOD_LINE], "documents.jsonl", 2, "id", "line 1"),
        (NODES, [GOOD_LINE, '{"id": "d2", "title": '], "documents.jsonl", 2, "json", ""),
        (
            [*NODES, {"id": "Top.Nul", "parent": "Top", "label": "a\u0000b"}],
            [GOOD_LINE],
            "taxonomy.json",
            4,
            "label",
            "NUL",
        ),
        (
            NODES,
            [GOOD_LINE, '{"id": "d2", "title": "t\\ud800", "text": "x", "node_ids": ["Top"]}'],
            "documents.jsonl",
            2,
            "title",
            "surrogate",
        ),
        (
            NODES,
            [GOOD_LINE, '{"id": "d2", "n": ' + "1" * 4301 + "}"],
            "documents.jsonl",
            2,
            "json",
            "digits",
        ),
    ],
    ids=[
        "unknown parent",
        "node without label",
        "node defined twice",
        "document without title",
        "label naming an unknown node",
        "document without labels",
        "document id repeated",
        "broken JSON",
        "NUL in a node label",
        "unpaired surrogate in a title",
        "integer too long to read",
    ],
)
def test_bad_input_names_the_file_line_and_field(
    database_url: str,
    tmp_path: Path,
    nodes: list[dict[str, Any]],
    lines: list[str],
    file: str,
    line: int,
    field: str,
    hint: str,
) -> None:
    directory = write_corpus(tmp_path / "corpus", nodes=nodes, document_lines=lines)

    with pytest.raises(corpus.CorpusFormatError) as caught:
        corpus.load_corpus(directory, database_url=database_url, progress=False)

    assert isinstance(caught.value, InvalidInput)
    assert (caught.value.file.name, caught.value.line, caught.value.field) == (file, line, field)
    assert f"{file}, line {line}, field {field!r}" in str(caught.value)
    assert hint in str(caught.value)


def test_a_bad_line_after_written_batches_leaves_the_database_unchanged(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(corpus, "BATCH_DOCUMENTS", 2)
    good = [
        json.dumps({"id": f"doc{index}", "title": "T", "text": "Text.", "node_ids": ["Top"]})
        for index in range(7)
    ]
    directory = write_corpus(tmp_path / "corpus", nodes=NODES, document_lines=[*good, "{}"])

    with pytest.raises(corpus.CorpusFormatError) as caught:
        corpus.load_corpus(directory, database_url=database_url, progress=False)

    assert caught.value.line == 8
    assert set(table_counts(database_url).values()) == {0}


def test_a_truncated_gzip_file_is_reported(database_url: str, tmp_path: Path) -> None:
    shutil.copy(FIXTURE / "taxonomy.json", tmp_path / "taxonomy.json")
    packed = (FIXTURE / "documents.jsonl.gz").read_bytes()
    (tmp_path / "documents.jsonl.gz").write_bytes(packed[: len(packed) // 2])

    with pytest.raises(corpus.CorpusFormatError) as caught:
        corpus.load_corpus(tmp_path, database_url=database_url, progress=False)

    assert caught.value.field == "gzip"
    assert table_counts(database_url)["documents"] == 0


def test_a_fraction_outside_zero_to_one_is_refused(database_url: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        corpus.load_corpus(FIXTURE, database_url=database_url, fraction=1.5, progress=False)

    assert caught.value.field == "fraction"


def test_a_directory_without_documents_is_refused(database_url: str, tmp_path: Path) -> None:
    shutil.copy(FIXTURE / "taxonomy.json", tmp_path / "taxonomy.json")

    with pytest.raises(InvalidInput, match="documents.jsonl"):
        corpus.load_corpus(tmp_path, database_url=database_url, progress=False)
