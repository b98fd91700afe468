"""Tools over memory outside the context: recall (conversation) and archival."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from workers.tools import ToolContext, ToolError, ToolSpec

_STR = {"type": "string"}
_PAGE = {"type": "integer", "description": "Which page of results, starting at 0."}


def _page(page: int | None) -> int:
    if page is None:
        return 0
    if page < 0:
        raise ToolError("page must be 0 or more")
    return page


def _date(value: str | None, name: str, *, end: bool) -> datetime | None:
    """'2026-11-25' (a whole day; an end date includes it) or an ISO 8601 time."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
            return day + timedelta(days=1) if end else day
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    except ValueError:
        raise ToolError(f"{name} must be a date like 2026-11-25 or an ISO 8601 time, got '{value}'") from None


def conversation_search(ctx: ToolContext, query: str, page: int | None = 0,
                        start_date: str | None = None, end_date: str | None = None) -> str:
    start, end = _date(start_date, "start_date", end=False), _date(end_date, "end_date", end=True)
    if start and end and start >= end:
        raise ToolError("start_date must be before end_date")
    result = ctx.memory.recall_search(ctx.agent_id, query, _page(page), start, end)
    return result.render("messages")


def archival_memory_insert(ctx: ToolContext, content: str) -> str:
    if not content.strip():
        raise ToolError("archival_memory_insert: content must not be empty")
    if len(content) > ctx.max_passage_chars:
        raise ToolError(f"archival_memory_insert: content has {len(content)} characters; "
                        f"store at most {ctx.max_passage_chars} per call")
    ctx.new_passages.append(content)
    return "Stored in archival memory."


def archival_memory_search(ctx: ToolContext, query: str, page: int | None = 0) -> str:
    if not query.strip():
        raise ToolError("archival_memory_search: query must not be empty")
    return ctx.memory.archival_search(ctx.agent_id, query, _page(page)).render("passages")


CONVERSATION_SEARCH = ToolSpec(
    name="conversation_search",
    description="Search everything you and the user ever said, including what is no longer in "
    "view: by meaning, optionally limited to a date range. Results come in pages of 5, newest "
    "information with its time.",
    params={
        "query": {**_STR, "description": "What to look for."},
        "page": _PAGE,
        "start_date": {**_STR, "description": "Only messages on or after this date (YYYY-MM-DD or ISO time)."},
        "end_date": {**_STR, "description": "Only messages on or before this date (YYYY-MM-DD or ISO time)."},
    },
    required=("query",),
    fn=conversation_search,
)
ARCHIVAL_MEMORY_INSERT = ToolSpec(
    name="archival_memory_insert",
    description="Store a note in archival memory, your long-term store outside the context. "
    "Write it so it can be found and understood later on its own.",
    params={"content": {**_STR, "description": "The text to store."}},
    required=("content",),
    fn=archival_memory_insert,
)
ARCHIVAL_MEMORY_SEARCH = ToolSpec(
    name="archival_memory_search",
    description="Search archival memory (your stored notes and documents you were given) by "
    "meaning. Results come in pages of 5.",
    params={"query": {**_STR, "description": "What to look for."}, "page": _PAGE},
    required=("query",),
    fn=archival_memory_search,
)

MEMORY_TOOLS = [CONVERSATION_SEARCH, ARCHIVAL_MEMORY_INSERT, ARCHIVAL_MEMORY_SEARCH]
