"""Prose: long text split at line, sentence and word ends, packed with overlap; plain text files."""

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

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


def split_long(text: str, limit: int) -> list[str]:
    """Pieces of at most ``limit`` characters: at line ends, then sentence ends, then spaces."""
    return [p for p in _split(text.strip(), limit, 0) if p.strip()]


_LEVELS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\n"), "\n"),
    (_SENTENCE_END, " "),
    (re.compile(r"[ \t]+"), " "),
)


def _split(text: str, limit: int, level: int) -> list[str]:
    if len(text) <= limit:
        return [text] if text.strip() else []
    if level >= len(_LEVELS):
        return [text[i : i + limit] for i in range(0, len(text), limit)]
    pattern, joiner = _LEVELS[level]
    parts = [p for p in pattern.split(text) if p.strip()]
    if len(parts) <= 1:
        return _split(text, limit, level + 1)
    out: list[str] = []
    cur = ""
    for part in parts:
        for piece in _split(part.strip(), limit, level + 1) if len(part) > limit else [part.strip()]:
            joined = f"{cur}{joiner}{piece}" if cur else piece
            if len(joined) <= limit:
                cur = joined
            else:
                if cur:
                    out.append(cur)
                cur = piece
    if cur:
        out.append(cur)
    return out


def _tail(text: str, n: int) -> str:
    """About the last ``n`` characters of ``text``, starting at a sentence or word start."""
    if n <= 0 or len(text) <= n:
        return ""
    cut = text[-n:]
    sentence = _SENTENCE_END.search(cut)
    if sentence and len(cut) - sentence.end() >= n // 3:
        return cut[sentence.end() :].strip()
    space = re.search(r"\s", cut)
    return cut[space.end() :].strip() if space else ""


def pack(units: list[str], budget: int, overlap: int, sep: str = "\n\n") -> list[str]:
    """Greedy packing of text units into bodies of at most ``budget`` characters.

    Each body after the first starts with the tail of the one before (``overlap``);
    a unit too long for a body (with room for the overlap) is split first.
    """
    unit_max = max(50, budget - overlap - len(sep))
    pieces: list[str] = []
    for unit in units:
        pieces += split_long(unit, unit_max) if len(unit) > unit_max else ([unit.strip()] if unit.strip() else [])
    bodies: list[str] = []
    cur: list[str] = []
    size = 0
    fresh = False  # does `cur` hold anything beyond the carried-over overlap?
    for piece in pieces:
        add = len(piece) + (len(sep) if cur else 0)
        if cur and size + add > budget:
            if fresh:
                bodies.append(sep.join(cur))
            tail = _tail(bodies[-1], overlap) if bodies else ""
            cur, size, fresh = ([tail], len(tail), False) if tail else ([], 0, False)
            add = len(piece) + (len(sep) if cur else 0)
            if size + add > budget:  # cannot happen with unit_max, but never overflow
                cur, size = [], 0
                add = len(piece)
        cur.append(piece)
        size += add
        fresh = True
    if cur and fresh:
        bodies.append(sep.join(cur))
    return bodies


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n[ \t]*\n", text) if p.strip()]


def chunk_text(text: str, name: str, *, max_chars: int = MAX_CHUNK_CHARS, overlap: int = OVERLAP_CHARS) -> list[str]:
    """Plain text: paragraphs packed into chunks headed by the file name."""
    header = _cut_header(_header_name(name), max_chars)
    return _with_header(header, pack(_paragraphs(text), _budget(header, max_chars), overlap))
