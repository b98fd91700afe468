"""What a memory search does besides its queries: the word match, the page, the notes.

Pure functions (no database imports), shared by the ORM path (storage/memory.py)
and the CLI's quick path (memq/quick/search.py), so both answer alike.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

PAGE_SIZE = 5
MAX_RESULTS = 50  # semantic search ranks everything; pages cover the best 50
TEXT_CANDIDATES = 500  # rows a word match reads before ranking them
NO_EMBEDDINGS_NOTE = "(no embedding model is configured: matched by words, not meaning)"


def lag_note(lag: int) -> str:
    return f"({lag} newest message(s) are not indexed yet; they were matched by words)"


@dataclass
class SearchPage:
    items: list[dict[str, Any]]
    page: int
    pages: int
    total: int
    notes: list[str] = field(default_factory=list)

    def render(self, what: str) -> str:
        """The tool result text: paging facts first, then the items."""
        head = page_line(self.page, self.pages, self.total, what, "page={}")
        lines = [head, *self.notes]
        lines += [json.dumps(item, ensure_ascii=False) for item in self.items]
        return "\n".join(lines)


def page_line(page: int, pages: int, total: int, what: str, next_hint: str) -> str:
    """"Page 1 of 3, 12 passages (5 per page); next: page=1.": pages count from 1 in text,
    while the argument that asks for one counts from 0 (``next_hint`` shows it)."""
    noun = what[:-1] if total == 1 and what.endswith("s") else what
    if total == 0:
        return f"No {what} found."
    if page >= pages:
        return (f"No {what} on {next_hint.format(page)}: {total} {noun} fill{'s' if total == 1 else ''} "
                f"{pages} page{'' if pages == 1 else 's'} ({PAGE_SIZE} per page); "
                f"the last is {next_hint.format(pages - 1)}.")
    line = f"Page {page + 1} of {pages}, {total} {noun} ({PAGE_SIZE} per page)"
    return line + (f"; next: {next_hint.format(page + 1)}." if page + 1 < pages else ".")


def recall_text(m: Any) -> str | None:
    """The searchable text of a message: what was said, not the protocol around it."""
    if m.role == "user":
        try:
            event = json.loads(m.content or "")
        except ValueError:
            return m.content or None
        if isinstance(event, dict) and event.get("type") in ("user_message", "scheduled_wakeup"):
            return str(event.get("message") or "") or None
        return None
    if m.role == "assistant":
        parts = [m.content or ""]
        for call in m.tool_calls or []:
            fn = call.get("function", {})
            if fn.get("name") == "send_message":
                try:
                    parts.append(str(json.loads(fn.get("arguments") or "{}").get("message", "")))
                except (ValueError, AttributeError):
                    pass
        text = " ".join(p for p in parts if p).strip()
        return text or None
    return None


def words(query: str) -> list[str]:
    return [w for w in query.lower().split() if len(w) > 1][:8]


def text_score(text: str, query_words: list[str]) -> int:
    low = text.lower()
    return sum(1 for w in query_words if w in low)


def ranked_by_words(rows: list[Any], query_words: list[str], text_of: Any) -> list[tuple[None, Any]]:
    """Rows holding the most query words first (stable), at most MAX_RESULTS."""
    scored = sorted(((text_score(text_of(r), query_words), r) for r in rows), key=lambda x: -x[0])
    return [(None, r) for n, r in scored if n > 0][:MAX_RESULTS]


def make_page(items: list[dict[str, Any]], page: int, notes: list[str]) -> SearchPage:
    total = len(items)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    start = page * PAGE_SIZE
    return SearchPage(items[start:start + PAGE_SIZE], page, pages, total, notes)
