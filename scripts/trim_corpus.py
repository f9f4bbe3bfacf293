"""Write the small copy of the Wikispeedia corpus that the project carries for its demo.

The full corpus (91 MB of text) lives outside the repository. The demo needs every document and
every label, so that coverage figures look like the real ones, but not every word: each article
keeps its opening paragraphs (about two, at most 1,500 characters), cut on a paragraph or
sentence boundary. The README written beside the data carries the source's attribution and
licence notice, copied from the original README, and says exactly how the text was cut.

Usage: python scripts/trim_corpus.py [--source DIR] [--output DIR]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_SOURCE = Path("/work/shared/data/wikispeedia")
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "data" / "wikispeedia"

MAX_PARAGRAPHS = 2
MAX_CHARS = 1500
"""Two paragraphs and ~1,500 characters keep the gzip near 2 MB with every article present."""

SHORT_PARAGRAPH_CHARS = 200
"""Shorter paragraphs (titles, captions, headings) do not count towards the two kept."""

MIN_CUT_CHARS = 200
"""A paragraph that does not fit is cut to the room left, if at least this much is left."""

ELLIPSIS = "…"
SENTENCE_END = re.compile(r"[.!?][\"')\]]?(?=\s)")
# Sections of the original README carried over word for word.
KEPT_SECTIONS = ("## Format", "## Source", "## Licence", "## How it was converted (exact steps)")


@dataclass
class Stats:
    documents: int = 0
    labels: int = 0
    remnants_dropped: int = 0
    cut_in_paragraph: int = 0
    cut_in_word: int = 0
    lengths: list[int] = field(default_factory=list)


def squashed(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def is_header_remnant(paragraph: str, labels: list[str]) -> bool:
    """Whether a first paragraph is the wrapped tail of the source's "Related subjects" line.

    The source's conversion dropped that header line, but where it wrapped, its tail (for
    example `before (including Roman Britain); Historical figures`, or just `Countries`) stayed
    as the first paragraph. It names the article's own labels, so it would leak them.
    """
    parts = [squashed(part) for part in paragraph.split(";")]
    wanted = [squashed(label) for label in labels]
    return all(part and any(label.endswith(part) for label in wanted) for part in parts)


def cut_paragraph(paragraph: str, limit: int, stats: Stats) -> str:
    """The longest run of whole sentences within `limit`, else whole words and an ellipsis."""
    ends = [match.end() for match in SENTENCE_END.finditer(paragraph) if match.end() <= limit]
    if ends:
        stats.cut_in_paragraph += 1
        return paragraph[: ends[-1]]
    stats.cut_in_word += 1
    head = paragraph[: limit - len(ELLIPSIS)]
    return head.rsplit(" ", 1)[0].rstrip(",;:") + ELLIPSIS


def trim_text(text: str, labels: list[str], stats: Stats) -> str:
    paragraphs = [paragraph for paragraph in text.split("\n\n") if paragraph.strip()]
    if len(paragraphs) > 1 and is_header_remnant(paragraphs[0], labels):
        stats.remnants_dropped += 1
        paragraphs = paragraphs[1:]

    kept: list[str] = []
    substantial = 0
    for paragraph in paragraphs:
        room = MAX_CHARS - len("\n\n".join([*kept, ""])) if kept else MAX_CHARS
        if len(paragraph) > room:
            if room >= MIN_CUT_CHARS:
                kept.append(cut_paragraph(paragraph, room, stats))
            break
        kept.append(paragraph)
        substantial += len(paragraph) >= SHORT_PARAGRAPH_CHARS
        if substantial == MAX_PARAGRAPHS:
            break
    return "\n\n".join(kept)


def trim_documents(source: Path, labels_by_key: dict[str, str]) -> tuple[bytes, Stats]:
    stats = Stats()
    buffer = io.BytesIO()
    # mtime 0 and a fixed level: the same input gives the same bytes, as in the original.
    with (
        gzip.open(source, "rt", encoding="utf-8") as lines,
        gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as out,
    ):
        for line in lines:
            document: dict[str, Any] = json.loads(line)
            labels = [labels_by_key[key] for key in document["node_ids"]]
            document["text"] = trim_text(document["text"], labels, stats)
            stats.documents += 1
            stats.labels += len(document["node_ids"])
            stats.lengths.append(len(document["text"]))
            out.write((json.dumps(document, ensure_ascii=False) + "\n").encode("utf-8"))
    return buffer.getvalue(), stats


def original_sections(readme: str) -> dict[str, str]:
    sections: dict[str, str] = {}
    for block in re.split(r"(?m)^(?=## )", readme):
        heading = block.split("\n", 1)[0].strip()
        if heading in KEPT_SECTIONS:
            sections[heading] = block.strip()
    missing = [heading for heading in KEPT_SECTIONS if heading not in sections]
    if missing:
        raise SystemExit(f"The source README lacks the sections {missing}; cannot keep its notice")
    return sections


def readme_text(*, sections: dict[str, str], stats: Stats, files: dict[str, bytes]) -> str:
    sizes = {name: len(content) for name, content in files.items()}
    digests = {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}
    lengths = stats.lengths
    return f"""# wikispeedia (trimmed) — Wikipedia articles labelled with a 3-level subject taxonomy

A shortened copy of the Wikispeedia corpus, small enough to keep in the repository for the demo
and for trying the loader. It has **every** article ({stats.documents:,}) and **every** label
({stats.labels:,}) of the full corpus, and the same 145-node taxonomy, byte for byte. Only the
article text is cut short, so document counts and coverage per node are those of the full corpus;
chunk counts are much smaller (one to four chunks per article, mostly two).

| file | size | sha256 |
|---|---|---|
| `taxonomy.json` | {sizes["taxonomy.json"]:,} B | `{digests["taxonomy.json"]}` |
| `documents.jsonl.gz` | {sizes["documents.jsonl.gz"]:,} B | `{digests["documents.jsonl.gz"]}` |
| `README.md` | this file | |

Load it with `agent-growth corpus load data/wikispeedia`.

## How this copy was trimmed

`scripts/trim_corpus.py` reads the full corpus and writes this directory. For each article:

1. If the first paragraph is the wrapped tail of the source's `Related subjects` header (a
   `;`-separated list in which every part is the end of one of the article's own label names,
   for example `before (including Roman Britain); Historical figures` or `Countries`), it is
   dropped, because it repeats the article's labels. That was the case for
   {stats.remnants_dropped:,} articles. The full corpus still has these remnants.
2. Whole paragraphs are kept from the start until {MAX_PARAGRAPHS} of them of at least
   {SHORT_PARAGRAPH_CHARS} characters are in; shorter ones (titles, image captions, headings)
   are kept but not counted. The text never passes {MAX_CHARS:,} characters.
3. A paragraph that would pass that limit is cut after the last sentence (`.`, `!` or `?`,
   then a space) that ends within it, or, with no such sentence, after the last whole word,
   followed by `…`; then the text ends. This cut {stats.cut_in_paragraph:,} articles at a
   sentence and {stats.cut_in_word:,} inside one. When less than {MIN_CUT_CHARS} characters of
   room are left, the paragraph is left out instead.

Nothing else changed: ids, titles, labels, urls, line order and key order are those of the full
corpus. The output is UTF-8 JSON (`ensure_ascii=False`), gzipped at level 9 with mtime 0, so the
same input gives the same bytes. Text length is now {min(lengths):,} to {max(lengths):,}
characters, median {statistics.median(lengths):,.0f}, total {sum(lengths):,}.

The sections below are copied unchanged from the README of the full corpus. They describe the
full text; "Counts" and the per-node tables of that README are left out, except that the
document and label counts, which trimming does not change, are given above.

{sections["## Format"]}

{sections["## Source"]}

{sections["## Licence"]}

{sections["## How it was converted (exact steps)"]}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    taxonomy = (args.source / "taxonomy.json").read_bytes()
    labels_by_key = {node["id"]: node["label"] for node in json.loads(taxonomy)}
    documents, stats = trim_documents(args.source / "documents.jsonl.gz", labels_by_key)
    sections = original_sections((args.source / "README.md").read_text(encoding="utf-8"))
    files = {"taxonomy.json": taxonomy, "documents.jsonl.gz": documents}

    args.output.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.source / "taxonomy.json", args.output / "taxonomy.json")
    (args.output / "documents.jsonl.gz").write_bytes(documents)
    readme = readme_text(sections=sections, stats=stats, files=files)
    (args.output / "README.md").write_text(readme, encoding="utf-8")
    print(
        f"Wrote {stats.documents} documents ({len(documents):,} B gzipped) to {args.output};"
        f" {stats.remnants_dropped} header remnants dropped,"
        f" {stats.cut_in_paragraph + stats.cut_in_word} first paragraphs cut"
    )


if __name__ == "__main__":
    main()
