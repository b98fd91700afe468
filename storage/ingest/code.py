"""Source code: top-level blocks packed whole into chunks headed ``name:first-last``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from storage.ingest.common import MAX_CHUNK_CHARS, _cut_header, _header_name

_CLOSER = re.compile(r"^(?:[})\]]|end\b|fi\b|done\b|esac\b|</)")


def code_blocks(lines: list[str]) -> list[tuple[int, int]]:
    """(first, last) 0-based line index of each top-level block, blank edges trimmed."""
    starts: list[int] = []
    prev: int | None = None
    blank_since = False
    for i, line in enumerate(lines):
        if not line.strip():
            blank_since = True
            continue
        if prev is None:
            starts.append(i)
        elif line[0] not in " \t" and not _CLOSER.match(line):
            before = lines[prev]
            if blank_since or before[0] in " \t" or _CLOSER.match(before):
                starts.append(i)
        prev = i
        blank_since = False
    blocks = []
    for n, start in enumerate(starts):
        end = (starts[n + 1] if n + 1 < len(starts) else len(lines)) - 1
        while end > start and not lines[end].strip():
            end -= 1
        blocks.append((start, end))
    return blocks


@dataclass
class _Piece:
    first: int
    last: int
    text: str
    whole: bool  # whole lines (may merge with neighbours) or a slice of one long line


def _fit(lines: list[str], first: int, last: int, budget: int, inner: bool = True) -> list[_Piece]:
    """A block that may be too long: at its inner blank lines, then per line, then sliced."""
    text = "\n".join(lines[first : last + 1])
    if len(text) <= budget:
        return [_Piece(first, last, text, True)]
    if first == last:
        return [_Piece(first, first, text[i : i + budget], False) for i in range(0, len(text), budget)
                if text[i : i + budget].strip()]
    groups: list[tuple[int, int]] = []
    if inner:
        start = None
        for i in range(first, last + 1):
            if lines[i].strip():
                if start is None:
                    start = i
            elif start is not None:
                groups.append((start, i - 1))
                start = None
        if start is not None:
            groups.append((start, last))
    if len(groups) <= 1:
        groups = [(i, i) for i in range(first, last + 1) if lines[i].strip()]
        inner = False
    pieces: list[_Piece] = []
    for a, b in groups:
        pieces += _fit(lines, a, b, budget, inner=False)
    return _merge(lines, pieces, budget)


def _merge(lines: list[str], pieces: list[_Piece], budget: int) -> list[_Piece]:
    out: list[_Piece] = []
    for piece in pieces:
        if out and out[-1].whole and piece.whole:
            text = "\n".join(lines[out[-1].first : piece.last + 1])
            if len(text) <= budget:
                out[-1] = _Piece(out[-1].first, piece.last, text, True)
                continue
        out.append(piece)
    return out


def chunk_code(text: str, name: str, *, max_chars: int = MAX_CHUNK_CHARS) -> list[str]:
    """Source code: whole top-level blocks packed into chunks headed ``name:first-last``."""
    lines = text.split("\n")
    base = _cut_header(_header_name(name), max_chars)
    budget = max_chars - len(base) - 2 - 2 * len(str(len(lines))) - 1  # "name:first-last\n"
    pieces: list[_Piece] = []
    for first, last in code_blocks(lines):
        pieces += _fit(lines, first, last, budget)
    return [f"{base}:{p.first + 1}-{p.last + 1}\n{p.text}" for p in _merge(lines, pieces, budget) if p.text.strip()]
