"""Recursive summaries: previous summary + evicted messages -> new summary.

The LLM writes it; when the call fails or the result is too long, a bounded
digest built here takes its place, so eviction never gets stuck.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from workers.llm import LLMClient, LLMError
from workers.tokens import TokenCounter

log = logging.getLogger("memq.summarizer")

SUMMARY_INSTRUCTIONS = """\
You maintain the running summary of a long conversation between an AI agent and \
its user. Older messages are about to leave the agent's view. Fold them into the \
summary: keep facts about the user, decisions, open questions, promises the agent \
made and anything it will need later; drop greetings and filler. Write in the \
third person, in plain prose or short bullet points, at most {max_words} words. \
Answer with the new summary only."""

MAX_LINE_CHARS = 600


def render_line(msg: dict[str, Any]) -> str:
    """One message as a line of plain text for the summarizer or the digest."""
    role = msg.get("role", "?")
    content = msg.get("content") or ""
    if role == "user":
        try:
            event = json.loads(content)
            content = f"[{event.get('type')}] {event.get('message') or event.get('reason') or ''}"
        except (ValueError, AttributeError):
            pass
    calls = msg.get("tool_calls") or []
    parts = [content] if content else []
    for call in calls:
        fn = call.get("function", {})
        parts.append(f"{fn.get('name')}({fn.get('arguments', '')})")
    text = " ".join(parts).replace("\n", " ")
    if len(text) > MAX_LINE_CHARS:
        text = text[: MAX_LINE_CHARS - 3] + "..."
    return f"{role}: {text}"


def digest(previous: str, evicted: Sequence[dict[str, Any]], max_chars: int) -> str:
    """The fallback summary: the previous one plus the latest lines, bounded, and a note."""
    note = f"[{len(evicted)} older messages moved to recall memory; search them with conversation_search]"
    lines = [render_line(m) for m in evicted if m.get("role") in ("user", "assistant")]
    body = "\n".join(x for x in [previous.strip(), *lines] if x)
    room = max_chars - len(note) - 1
    if len(body) > room:
        # Keep the newest part: older content is the first to go.
        body = "..." + body[-max(0, room - 3) :] if room > 3 else ""
    return f"{body}\n{note}" if body else note


class Summarizer:
    def __init__(self, llm: LLMClient, counter: TokenCounter) -> None:
        self.llm = llm
        self.counter = counter

    def summarize(
        self, model: str, previous: str, evicted: Sequence[dict[str, Any]], max_tokens: int, input_tokens: int
    ) -> tuple[str, bool]:
        """The new summary and whether the LLM wrote it (False: the fallback digest)."""
        max_chars = max_tokens * 3  # a conservative chars-per-token for a first cut
        body = "\n".join(render_line(m) for m in evicted)
        prompt = f"Current summary:\n{previous or '(none yet)'}\n\nMessages leaving the view:\n{body}"
        budget_chars = max(1000, input_tokens * 3)
        if len(prompt) > budget_chars:
            prompt = prompt[:budget_chars]
        messages = [
            {"role": "system", "content": SUMMARY_INSTRUCTIONS.format(max_words=max(20, max_tokens // 2))},
            {"role": "user", "content": prompt},
        ]
        try:
            reply = self.llm.complete(messages, None, model=model, max_tokens=max_tokens)
            text = (reply.content or "").strip()
        except LLMError as exc:
            log.warning("summary by the model failed, using a digest: %s", exc)
            text = ""
        if text and self.counter.text(model, text) <= max_tokens:
            return text, True
        fallback = digest(previous, evicted, max_chars)
        while self.counter.text(model, fallback) > max_tokens and max_chars > 100:
            max_chars = max_chars * 3 // 4
            fallback = digest(previous, evicted, max_chars)
        return fallback, False
