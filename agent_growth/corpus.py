"""Importing a taxonomy and its labelled documents into PostgreSQL.

A corpus directory holds `taxonomy.json` (a list of nodes, each naming its parent) and
`documents.jsonl` or `documents.jsonl.gz` (one article per line, with the keys of its nodes); see
`data/wikispeedia/README.md` for the format. The whole load is one transaction: a bad line
anywhere leaves the database as it was, and the error names the file, the line and the field.

Loading must be repeatable, so every id is derived rather than drawn: nodes get uuid5 of
(taxonomy version, key), documents uuid5 of their external id. Documents already present are
skipped before their text is split, and nodes and labels go through staging tables with
`ON CONFLICT DO NOTHING`; a second load of the same files adds nothing. Rows are written with
COPY in batches, because row-by-row INSERTs of ~120k chunks would dominate the load time.
Splitting text is cheap next to the writes (the Rust splitter handles the full Wikispeedia corpus
in well under a second), so it stays in-process.

Known limit: rows already in the database are never updated. To change a document's text or
title, delete it first (its chunks and labels go with it) and load again; to change a node, load
the taxonomy under a new version.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from semantic_text_splitter import TextSplitter

from agent_growth.db import engine as db_engine
from agent_growth.errors import InvalidInput

logger = logging.getLogger(__name__)

# Fixed namespaces: changing either would give every node or document a new id on the next load.
NODE_NAMESPACE = uuid.UUID("5b0f0c8e-5d0a-4c52-9a53-6a1f7d4e2c01")
DOCUMENT_NAMESPACE = uuid.UUID("5b0f0c8e-5d0a-4c52-9a53-6a1f7d4e2c02")

CHUNK_SIZE_CHARS = 1000
"""Chunks hold whole paragraphs up to this size; a longer paragraph is cut at sentences."""

BATCH_DOCUMENTS = 256
"""Documents per COPY round: large enough to amortise round trips, small enough to stream."""

LOAD_LOCK_KEY = 0x4147_434F_5250_5553
"""Advisory lock that serialises concurrent loads, so "already present" stays true until commit."""

TAXONOMY_FILE = "taxonomy.json"
DOCUMENT_FILES = ("documents.jsonl", "documents.jsonl.gz")


class CorpusFormatError(InvalidInput):
    """A corpus file breaks the format; says which file, line and field, and what is wrong."""

    def __init__(self, *, file: Path, line: int, field: str, message: str) -> None:
        super().__init__(field, message)
        self.file = file
        self.line = line
        self.args = (f"{file.name}, line {line}, field {field!r}: {message}",)


@dataclass(frozen=True)
class _Where:
    """A place in a corpus file, to raise errors about it in one line."""

    file: Path
    line: int

    def error(self, field: str, message: str) -> CorpusFormatError:
        return CorpusFormatError(file=self.file, line=self.line, field=field, message=message)


@dataclass(frozen=True)
class NodeSpec:
    key: str
    parent_key: str | None
    label: str
    path: str
    level: int


@dataclass(frozen=True)
class DocumentSpec:
    external_id: str
    title: str
    text: str
    url: str | None
    node_keys: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class LoadReport:
    taxonomy_version: str
    nodes_in_file: int
    nodes_added: int
    documents_in_file: int
    documents_selected: int
    documents_added: int
    chunks_added: int
    labels_added: int
    duration_s: float

    def summary(self) -> str:
        return (
            f"taxonomy {self.taxonomy_version}: {self.nodes_added} of {self.nodes_in_file} nodes"
            f" added; {self.documents_added} of {self.documents_selected} selected documents"
            f" added ({self.documents_in_file} in file), {self.chunks_added} chunks,"
            f" {self.labels_added} labels, in {self.duration_s:.1f} s"
        )


def node_uuid(version: str, key: str) -> uuid.UUID:
    # JSON keeps the pair unambiguous whatever characters the version or key contain.
    return uuid.uuid5(NODE_NAMESPACE, json.dumps([version, key]))


def document_uuid(external_id: str) -> uuid.UUID:
    return uuid.uuid5(DOCUMENT_NAMESPACE, external_id)


def is_selected(external_id: str, fraction: float) -> bool:
    """Whether a document belongs to the first `fraction` of the corpus, stably across runs.

    A larger fraction selects a superset, so loading 0.5 and then 1.0 adds the other half.
    """
    digest = hashlib.sha256(external_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def read_taxonomy(path: Path) -> list[NodeSpec]:
    """Validated nodes of a taxonomy file, parents before children."""
    raw_nodes: dict[str, tuple[int, dict[str, Any]]] = {}
    for line, item in _json_array_items(path):
        where = _Where(path, line)
        if not isinstance(item, dict):
            raise where.error("node", "not an object")
        key = _required_str(item, "id", where=where)
        if key in raw_nodes:
            raise where.error("id", f"{key!r} is already defined on line {raw_nodes[key][0]}")
        if "parent" not in item:
            raise where.error("parent", "missing; use null for a top node")
        if item["parent"] is not None and not isinstance(item["parent"], str):
            raise where.error("parent", "must be a node id or null")
        _required_str(item, "label", where=where)
        for field in ("id", "parent", "label", "path"):
            value = item.get(field)
            if isinstance(value, str) and "\x00" in value:
                raise where.error(field, "contains a NUL character, which PostgreSQL cannot store")
        raw_nodes[key] = (line, item)

    for line, item in raw_nodes.values():
        parent = item["parent"]
        if parent is not None and parent not in raw_nodes:
            raise _Where(path, line).error(
                "parent", f"unknown node {parent!r}; define it in {path.name} first"
            )

    levels: dict[str, int] = {}
    for key, (line, item) in raw_nodes.items():
        levels[key] = _depth(key, raw_nodes, file=path)
        if "level" in item and item["level"] != levels[key]:
            raise _Where(path, line).error(
                "level", f"{item['level']!r} does not match its depth {levels[key]} under parent"
            )

    nodes = []
    for key, (_, item) in sorted(raw_nodes.items(), key=lambda pair: (levels[pair[0]], pair[0])):
        path_text = item.get("path") or _label_path(key, raw_nodes)
        nodes.append(NodeSpec(key, item["parent"], item["label"], path_text, levels[key]))
    return nodes


def documents_path(directory: Path) -> Path:
    present = [directory / name for name in DOCUMENT_FILES if (directory / name).is_file()]
    if not present:
        raise InvalidInput("directory", f"{directory} has neither {' nor '.join(DOCUMENT_FILES)}")
    if len(present) > 1:
        raise InvalidInput(
            "directory", f"{directory} has both {' and '.join(DOCUMENT_FILES)}; keep only one"
        )
    return present[0]


def iter_documents(
    path: Path, *, node_keys: set[str], position: list[int] | None = None
) -> Iterator[DocumentSpec]:
    """Validated documents of a JSON Lines file (plain or gzip).

    `position`, when given, is kept at the number of bytes of the file read so far (compressed
    bytes for gzip), so that a caller can draw progress.
    """
    seen: dict[str, int] = {}
    line_number = 0
    with path.open("rb") as raw:
        lines: Iterable[bytes] = gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw
        try:
            for line_number, line in enumerate(lines, start=1):
                if position is not None:
                    position[0] = raw.tell()
                if not line.strip():
                    continue
                where = _Where(path, line_number)
                document = _parse_document(line, where=where, node_keys=node_keys)
                if document.external_id in seen:
                    first = seen[document.external_id]
                    raise where.error(
                        "id", f"{document.external_id!r} already appears on line {first}"
                    )
                seen[document.external_id] = line_number
                yield document
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            where = _Where(path, line_number + 1)
            raise where.error("gzip", f"cannot be decompressed ({exc})") from exc


def load_corpus(
    directory: Path,
    *,
    database_url: str | None = None,
    fraction: float = 1.0,
    taxonomy_version: str = "1",
    progress: bool = True,
) -> LoadReport:
    """Load the taxonomy and the selected documents of `directory`, adding only what is new."""
    if not 0 < fraction <= 1:
        raise InvalidInput("fraction", f"{fraction} is outside (0, 1]; use 1 for everything")
    if not taxonomy_version or len(taxonomy_version) > 64:
        raise InvalidInput("taxonomy_version", "must be 1 to 64 characters")
    started = time.perf_counter()
    nodes = read_taxonomy(directory / TAXONOMY_FILE)
    source = documents_path(directory)
    splitter = TextSplitter(CHUNK_SIZE_CHARS)
    counts = dict.fromkeys(("in_file", "selected", "added", "chunks"), 0)

    with (
        psycopg.connect(db_engine.psycopg_dsn(database_url)) as conn,
        _progress_bar(progress) as bar,
    ):
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOAD_LOCK_KEY,))
        nodes_added = _insert_nodes(conn, version=taxonomy_version, nodes=nodes)
        conn.execute(
            "CREATE TEMP TABLE corpus_label_stage (external_id text, node_key text) ON COMMIT DROP"
        )

        position = [0]
        task = bar.add_task(source.name, total=source.stat().st_size, documents=0)
        batch: list[DocumentSpec] = []
        known_keys = {node.key for node in nodes}
        for document in iter_documents(source, node_keys=known_keys, position=position):
            counts["in_file"] += 1
            if is_selected(document.external_id, fraction):
                batch.append(document)
            if len(batch) >= BATCH_DOCUMENTS:
                _write_batch(conn, batch, splitter=splitter, counts=counts)
                batch = []
                bar.update(task, completed=position[0], documents=counts["selected"])
        _write_batch(conn, batch, splitter=splitter, counts=counts)
        bar.update(task, completed=position[0], documents=counts["selected"])

        labels_added = _insert_labels(conn, version=taxonomy_version)
        if counts["added"] or labels_added:
            # Fresh planner statistics, so that coverage queries right after a bulk load do not
            # plan for the empty tables autovacuum last saw. Our own inserts count as live.
            conn.execute("ANALYZE taxonomy_nodes, documents, chunks, doc_taxonomy")

    report = LoadReport(
        taxonomy_version=taxonomy_version,
        nodes_in_file=len(nodes),
        nodes_added=nodes_added,
        documents_in_file=counts["in_file"],
        documents_selected=counts["selected"],
        documents_added=counts["added"],
        chunks_added=counts["chunks"],
        labels_added=labels_added,
        duration_s=time.perf_counter() - started,
    )
    logger.debug("loaded corpus from %s: %s", directory, report.summary())
    return report


def _insert_nodes(conn: psycopg.Connection[Any], *, version: str, nodes: list[NodeSpec]) -> int:
    conn.execute(
        "CREATE TEMP TABLE corpus_node_stage"
        " (id uuid, key text, parent_key text, label text, path text, level int) ON COMMIT DROP"
    )
    with conn.cursor().copy(
        "COPY corpus_node_stage (id, key, parent_key, label, path, level) FROM STDIN"
    ) as copy:
        for node in nodes:
            copy.write_row(
                (
                    node_uuid(version, node.key),
                    node.key,
                    node.parent_key,
                    node.label,
                    node.path,
                    node.level,
                )
            )

    # Level by level, so that a parent is in the table before its children look it up. The
    # parent's id is read back rather than derived, in case the node predates this loader.
    added = 0
    for level in sorted({node.level for node in nodes}):
        cursor = conn.execute(
            """
            INSERT INTO taxonomy_nodes (id, version, key, parent_id, label, path, level)
            SELECT s.id, %(version)s, s.key, p.id, s.label, s.path, s.level
            FROM corpus_node_stage s
            LEFT JOIN taxonomy_nodes p ON p.version = %(version)s AND p.key = s.parent_key
            WHERE s.level = %(level)s
            ON CONFLICT DO NOTHING
            """,
            {"version": version, "level": level},
        )
        added += cursor.rowcount
    return added


def _write_batch(
    conn: psycopg.Connection[Any],
    batch: list[DocumentSpec],
    *,
    splitter: TextSplitter,
    counts: dict[str, int],
) -> None:
    if not batch:
        return
    counts["selected"] += len(batch)

    present = {
        row[0]
        for row in conn.execute(
            "SELECT external_id FROM documents WHERE external_id = ANY(%s)",
            ([document.external_id for document in batch],),
        )
    }
    new = [document for document in batch if document.external_id not in present]
    chunk_lists = splitter.chunk_all([document.text for document in new])

    cursor = conn.cursor()
    with cursor.copy("COPY documents (id, external_id, title, url, char_count) FROM STDIN") as copy:
        for document in new:
            copy.write_row(
                (
                    document_uuid(document.external_id),
                    document.external_id,
                    document.title,
                    document.url,
                    len(document.text),
                )
            )
    with cursor.copy("COPY chunks (document_id, ordinal, text, char_count) FROM STDIN") as copy:
        for document, chunks in zip(new, chunk_lists, strict=True):
            document_id = document_uuid(document.external_id)
            for ordinal, chunk in enumerate(chunks):
                copy.write_row((document_id, ordinal, chunk, len(chunk)))
            counts["chunks"] += len(chunks)
    # Labels of documents already present are staged too: they may name a new taxonomy version.
    with cursor.copy("COPY corpus_label_stage (external_id, node_key) FROM STDIN") as copy:
        for document in batch:
            for key in document.node_keys:
                copy.write_row((document.external_id, key))
    counts["added"] += len(new)


def _insert_labels(conn: psycopg.Connection[Any], *, version: str) -> int:
    cursor = conn.execute(
        """
        INSERT INTO doc_taxonomy (document_id, node_id, confidence)
        SELECT d.id, n.id, 1.0
        FROM corpus_label_stage s
        JOIN documents d ON d.external_id = s.external_id
        JOIN taxonomy_nodes n ON n.version = %(version)s AND n.key = s.node_key
        ON CONFLICT DO NOTHING
        """,
        {"version": version},
    )
    return cursor.rowcount


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[documents]} documents"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


def _json_array_items(path: Path) -> Iterator[tuple[int, Any]]:
    """Items of a JSON array file, each with the line its value starts on."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput("directory", f"{path.parent} has no {path.name}") from None
    except IsADirectoryError:
        raise InvalidInput("directory", f"{path} is a directory, not a JSON file") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise _Where(path, line).error("json", "not UTF-8") from exc
    decoder = json.JSONDecoder()
    try:
        index = _skip_space(text, 0)
        if text[index : index + 1] != "[":
            raise _Where(path, 1).error("taxonomy", "must be a JSON list of nodes")
        index = _skip_space(text, index + 1)
        while text[index : index + 1] != "]":
            item, end = decoder.raw_decode(text, index)
            yield text.count("\n", 0, index) + 1, item
            index = _skip_space(text, end)
            if text[index : index + 1] == ",":
                index = _skip_space(text, index + 1)
            elif text[index : index + 1] != "]":
                raise json.JSONDecodeError("expected ',' or ']'", text, index)
    except json.JSONDecodeError as exc:
        raise _Where(path, exc.lineno).error("json", f"{exc.msg} (column {exc.colno})") from exc
    except RecursionError as exc:
        raise _Where(path, 1).error("json", "nested too deeply to read") from exc
    except ValueError as exc:  # Integers of more than 4300 digits, for one.
        raise _Where(path, 1).error("json", str(exc)) from exc


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def _depth(key: str, raw_nodes: dict[str, tuple[int, dict[str, Any]]], *, file: Path) -> int:
    depth, current, visited = 1, key, {key}
    while (parent := raw_nodes[current][1]["parent"]) is not None:
        if parent in visited:
            raise _Where(file, raw_nodes[key][0]).error(
                "parent", f"the parents of {key!r} form a cycle through {parent!r}"
            )
        visited.add(parent)
        depth, current = depth + 1, parent
    return depth


def _label_path(key: str, raw_nodes: dict[str, tuple[int, dict[str, Any]]]) -> str:
    labels = []
    current: str | None = key
    while current is not None:
        item = raw_nodes[current][1]
        labels.append(item["label"])
        current = item["parent"]
    return " / ".join(reversed(labels))


def _parse_document(raw: bytes, *, where: _Where, node_keys: set[str]) -> DocumentSpec:
    try:
        item = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise where.error("json", f"{exc.msg} (column {exc.colno})") from exc
    except UnicodeDecodeError as exc:
        raise where.error("json", "not UTF-8") from exc
    except RecursionError as exc:
        raise where.error("json", "nested too deeply to read") from exc
    except ValueError as exc:  # Integers of more than 4300 digits, for one.
        raise where.error("json", str(exc)) from exc
    if not isinstance(item, dict):
        raise where.error("document", "not an object")

    external_id = _required_str(item, "id", where=where)
    title = _required_str(item, "title", where=where)
    text = item.get("text")
    if not isinstance(text, str):
        raise where.error("text", "missing; give the body as a string")
    url = item.get("url")
    if url is not None and not isinstance(url, str):
        raise where.error("url", "must be a string")
    # PostgreSQL text cannot hold NUL; say where it is instead of failing mid-COPY.
    for field, value in (("id", external_id), ("title", title), ("text", text), ("url", url)):
        if value and "\x00" in value:
            raise where.error(field, "contains a NUL character, which PostgreSQL cannot store")
        try:
            (value or "").encode("utf-8")
        except UnicodeEncodeError as exc:
            raise where.error(field, "contains an unpaired surrogate; not valid Unicode") from exc

    keys = item.get("node_ids")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise where.error("node_ids", "missing; give a non-empty list of taxonomy node ids")
    unknown = [key for key in keys if key not in node_keys]
    if unknown:
        raise where.error(
            "node_ids", f"unknown taxonomy node {unknown[0]!r}; add it to {TAXONOMY_FILE}"
        )
    return DocumentSpec(external_id, title, text, url, tuple(dict.fromkeys(keys)), where.line)


def _required_str(item: dict[str, Any], field: str, *, where: _Where) -> str:
    value = item.get(field)
    if not isinstance(value, str) or not value:
        problem = "missing" if value is None else f"{type(value).__name__} {value!r}"
        raise where.error(field, f"{problem}; give a non-empty string")
    return value
