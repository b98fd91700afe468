"""Markdown: sections by heading (ATX and setext), fenced code kept whole, chunks headed by the trail."""

from __future__ import annotations

import re

from storage.ingest.common import (
    MAX_CHUNK_CHARS,
    OVERLAP_CHARS,
    _budget,
    _cut_header,
    _header_name,
    _with_header,
)
from storage.ingest.text import chunk_text, pack

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def _closes(m: re.Match[str] | None, fence: str) -> bool:
    return bool(m) and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence)


def markdown_sections(text: str) -> list[tuple[list[str], list[str]]]:
    """(heading trail, body lines) per section; a fenced block's lines are never headings."""
    lines = text.split("\n")
    sections: list[tuple[list[str], list[str]]] = []
    trail: list[tuple[int, str]] = []
    body: list[str] = []
    fence: str | None = None

    def close() -> None:
        sections.append(([t for _, t in trail], body))

    i = 0
    while i < len(lines):
        line = lines[i]
        m = _FENCE.match(line)
        if fence is not None:
            body.append(line)
            if _closes(m, fence):
                fence = None
            i += 1
            continue
        if m:
            fence = m.group(1)
            body.append(line)
            i += 1
            continue
        atx = _ATX.match(line)
        setext = None
        if not atx and line.strip() and i + 1 < len(lines) and _SETEXT.match(lines[i + 1]) \
                and (i == 0 or not lines[i - 1].strip()) and not re.match(r"^ {0,3}([-*+>]|\d+[.)])\s", line):
            setext = 1 if lines[i + 1].strip()[0] == "=" else 2
        if atx or setext:
            level = len(atx.group(1)) if atx else setext
            title = (atx.group(2) or "").strip() if atx else line.strip()
            close()
            while trail and trail[-1][0] >= level:
                trail.pop()
            trail.append((level, title or "(untitled)"))
            body = []
            i += 1 if atx else 2
            continue
        body.append(line)
        i += 1
    close()
    return sections


def _md_blocks(lines: list[str]) -> list[str]:
    """Paragraphs, with each fenced code block kept whole (blank lines and all)."""
    blocks: list[str] = []
    cur: list[str] = []
    fence: str | None = None
    for line in lines:
        m = _FENCE.match(line)
        if fence is not None:
            cur.append(line)
            if _closes(m, fence):
                fence = None
            continue
        if m:
            fence = m.group(1)
            cur.append(line)
            continue
        if not line.strip():
            if cur:
                blocks.append("\n".join(cur))
                cur = []
            continue
        cur.append(line)
    if cur:
        blocks.append("\n".join(cur))
    return [b.strip("\n") for b in blocks if b.strip()]


def chunk_markdown(text: str, name: str, *, max_chars: int = MAX_CHUNK_CHARS,
                   overlap: int = OVERLAP_CHARS) -> list[str]:
    """Markdown: one or more chunks per section, headed ``name § A > B``."""
    chunks: list[str] = []
    base = _header_name(name)
    for trail, body in markdown_sections(text):
        blocks = _md_blocks(body)
        if not blocks:
            continue  # a heading with no text of its own lives on in its children's headers
        header = _cut_header(f"{base} § {' > '.join(trail)}" if trail else base, max_chars)
        chunks += _with_header(header, pack(blocks, _budget(header, max_chars), overlap))
    if not chunks:  # only headings: keep them as text
        return chunk_text(text, name, max_chars=max_chars, overlap=overlap)
    return chunks
