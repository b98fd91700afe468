"""Context compilation: the exact message list the LLM sees for one step.

Fresh before every LLM call: system instructions, memory statistics, core
memory (used/limit per block), the summary of evicted history, the in-context
FIFO queue, an optional memory-pressure alert and the event being processed.
The window planner decides evictions; the summarizer folds them into the summary.
The event that started the active run (pinned) stays in view until the run
ends, whatever else is evicted: a long heartbeat chain keeps knowing its task.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memq.constants import EventType, Role
from memq.settings import Settings
from storage.models import Agent, Message
from workers.events import pack_event
from workers.openai_format import FrozenMessage
from workers.prompts import BASE_SYSTEM_PROMPT, MEMORY_PRESSURE_ALERT, PINNED_EVENT_DROPPED
from workers.summarizer import Summarizer
from workers.tokens import PER_MESSAGE_OVERHEAD, TokenCounter
from workers.tools import Block
from workers.window import Budget, budget_for, plan_window


@dataclass(frozen=True)
class CompiledContext:
    messages: list[dict[str, Any]]
    tokens: int  # estimated prompt tokens, tool schemas included
    window: int
    evicted: int  # oldest history messages evicted in this step
    context_start_id: int  # the agent's new context cursor
    summary: str
    summary_tokens: int
    summarized_by_llm: bool
    alert: str | None  # a system_alert event given in this step, stored before the event
    pressure_alerted: bool

    @property
    def chars(self) -> int:
        return sum(len(m.get("content") or "") for m in self.messages)


def render_system(
    agent: Agent, blocks: dict[str, Block], summary: str, in_view: int, recall_count: int
) -> str:
    """Instructions, memory statistics, every core-memory block with used/limit, the summary."""
    head, tail = _system_parts(agent, blocks, summary)
    return "\n".join([head, _stats_text(agent, _stat_values(agent, in_view, recall_count)), tail])


def _stat_values(agent: Agent, in_view: int, recall_count: int) -> tuple[str, str, str]:
    return str(in_view), str(recall_count), str(agent.passage_count)


def _stats_text(agent: Agent, values: tuple[str, str, str]) -> str:
    """The memory statistics. They change every step, so their tokens are counted as
    the text with 0 for each number (the same every step) plus each number's tokens
    beyond that 0 (digits are tokens of their own): both cache hits, and exact."""
    in_view, recall, passages = values
    return "\n".join([
        "",
        "### Memory statistics",
        f"- agent: {agent.name} (id {agent.id})",
        f"- messages in view: {in_view}",
        f"- messages stored in total (recall memory, conversation_search): {recall}",
        f"- passages in archival memory (archival_memory_search): {passages}",
        "",
    ])


def _system_parts(agent: Agent, blocks: dict[str, Block], summary: str) -> tuple[str, str]:
    """(instructions, core memory + summary): they change rarely, so their counts are cached."""
    head = agent.system_prompt or BASE_SYSTEM_PROMPT
    parts = ["### Core memory"]
    for label, block in blocks.items():
        parts.append(f'<block label="{label}" used="{len(block.value)}" limit="{block.limit_chars}">')
        parts.append(block.value)
        parts.append("</block>")
    if summary:
        parts.append("")
        parts.append("### Summary of older conversation (no longer in view)")
        parts.append(summary)
    return head, "\n".join(parts)


def message_to_llm(m: Message) -> dict[str, Any]:
    """One stored message in OpenAI chat format, exactly as it was first given."""
    if m.role == Role.ASSISTANT:
        out: dict[str, Any] = {"role": "assistant", "content": m.content}
        if m.tool_calls:
            out["tool_calls"] = m.tool_calls
        return out
    if m.role == Role.TOOL:
        return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content or ""}
    return {"role": m.role, "content": m.content or ""}


class ContextBuilder:
    """Builds each step's prompt within the model's window (built once per process)."""

    def __init__(
        self, settings: Settings, counter: TokenCounter, summarizer: Summarizer, tools: list[dict[str, Any]]
    ) -> None:
        self.settings = settings
        self.counter = counter
        self.summarizer = summarizer
        self.tools = tools
        # Stored messages as the model is shown them, per agent, by message id (they never change):
        # their JSON is encoded once for every later prompt (workers/openai_format.FrozenMessage).
        # Each build keeps only what its prompt shows, so an evicted message is let go at once and
        # the cache holds the in-view messages of the last `history_cache_agents` agents, no more.
        self._shown: OrderedDict[str, dict[int, FrozenMessage]] = OrderedDict()
        self._shown_agents = settings.history_cache_agents
        self._lock = threading.Lock()

    def _shown_messages(self, agent_id: str, in_view: Sequence[Message]) -> list[dict[str, Any]]:
        with self._lock:
            known = self._shown.get(agent_id) or {}
        out: list[dict[str, Any]] = []
        now: dict[int, FrozenMessage] = {}
        for m in in_view:
            if m.id is None:  # a pinned event shown again from its run's row
                out.append(message_to_llm(m))
                continue
            shown = known.get(m.id)
            if shown is None:
                shown = FrozenMessage(message_to_llm(m))
            now[m.id] = shown
            out.append(shown)
        if self._shown_agents > 0:
            with self._lock:  # one step of an agent at a time (its lease): replacing is safe
                self._shown[agent_id] = now
                self._shown.move_to_end(agent_id)
                while len(self._shown) > self._shown_agents:
                    self._shown.popitem(last=False)
        return out

    def budget(self, model: str) -> Budget:
        return budget_for(self.settings, self.counter.window(model))

    def build(
        self,
        agent: Agent,
        blocks: dict[str, Block],
        history: Sequence[Message],
        event: str,
        *,
        force_evict: int = 0,
        pinned: str | None = None,
    ) -> CompiledContext:
        """pinned: the event that started the active run (None on its own first step)."""
        model = agent.model or self.settings.llm_model or "gpt-4o-mini"
        budget = self.budget(model)
        recall = agent.message_count
        pin, history = _take_pinned(history, pinned)
        if pin is not None and pin.id is None:  # evicted earlier: shown again from the run's row
            pin.tokens = self.counter.message(model, message_to_llm(pin))
        numbers = _stat_values(agent, len(history) + 1 + int(pin is not None), recall)
        base = (
            PER_MESSAGE_OVERHEAD
            + self.counter.tools(model, self.tools)
            + sum(self.counter.text(model, part) for part in _system_parts(agent, blocks, ""))
            + self.counter.text(model, _stats_text(agent, ("0", "0", "0")))
            + sum(self.counter.text(model, n) - 1 for n in numbers)
        )
        event_msg = {"role": "user", "content": event}
        alert_text = pack_event(
            EventType.SYSTEM_ALERT, MEMORY_PRESSURE_ALERT.format(percent=int(budget.warn_ratio * 100))
        )
        dropped_text = pack_event(EventType.SYSTEM_ALERT, PINNED_EVENT_DROPPED)
        plan = plan_window(
            budget=budget,
            base_tokens=base,
            summary_tokens=_summary_cost(agent.summary_tokens),
            history_tokens=[m.tokens for m in history],
            history_roles=[m.role for m in history],
            event_tokens=self.counter.message(model, event_msg),
            alert_tokens=max(self.counter.message(model, {"content": alert_text}), 0 if pin is None else (
                self.counter.message(model, {"content": dropped_text}) + self.counter.text(model, PINNED_EVENT_DROPPED))),
            alerted=agent.pressure_alerted,
            force_evict=force_evict,
            pinned_tokens=pin.tokens if pin is not None else 0,
        )
        if plan.pin_dropped:
            alert_text, pin = dropped_text, None
        summary, summary_tokens, by_llm = agent.summary, agent.summary_tokens, False
        kept = list(history[plan.evict :])
        start_id = agent.context_start_id
        if plan.evict:
            evicted = [message_to_llm(m) for m in history[: plan.evict]]
            summary, by_llm = self.summarizer.summarize(
                model, agent.summary, evicted, budget.summary_reserve - 16, budget.limit - budget.summary_reserve
            )
            summary_tokens = self.counter.text(model, summary)
            start_id = kept[0].id if kept else history[-1].id + 1
        if plan.pin_dropped:
            summary = f"{summary}\n{PINNED_EVENT_DROPPED}".strip()
            summary_tokens = self.counter.text(model, summary)
        in_view = _with_pinned(kept, pin)
        system = render_system(agent, blocks, summary, len(in_view) + 1 + int(plan.alert), recall)
        messages = [{"role": "system", "content": system}]
        messages.extend(self._shown_messages(agent.id, in_view))
        alert = alert_text if plan.alert else None
        if alert:
            messages.append({"role": "user", "content": alert})
        messages.append(event_msg)
        tokens = (
            base
            + _summary_cost(summary_tokens)
            + sum(m.tokens for m in in_view)
            + self.counter.message(model, event_msg)
            + (self.counter.message(model, {"content": alert}) if alert else 0)
        )
        return CompiledContext(
            messages=messages,
            tokens=tokens,
            window=budget.window,
            evicted=plan.evict,
            context_start_id=start_id,
            summary=summary,
            summary_tokens=summary_tokens,
            summarized_by_llm=by_llm,
            alert=alert,
            pressure_alerted=plan.alerted_after,
        )


def _take_pinned(history: Sequence[Message], pinned: str | None) -> tuple[Message | None, list[Message]]:
    """(the pinned event's message, the history without it).

    The stored user message with the pinned text (an event's JSON carries its
    time, so the text is unique) if it is still after the context cursor;
    otherwise a fresh copy (no id) from the run's own row, shown before the
    rest, as it was before the cursor moved past it.
    """
    if pinned is None:
        return None, list(history)
    for i, m in enumerate(history):
        if m.role == Role.USER and m.content == pinned:
            return m, [*history[:i], *history[i + 1:]]
    return Message(id=None, role=Role.USER.value, content=pinned, tokens=0), list(history)


def _with_pinned(kept: list[Message], pin: Message | None) -> list[Message]:
    """The messages in view: the pinned one at its place, or first if its place was evicted."""
    if pin is None:
        return kept
    if pin.id is None or not kept or pin.id < kept[0].id:
        return [pin, *kept]
    return sorted([*kept, pin], key=lambda m: m.id)


def _summary_cost(summary_tokens: int) -> int:
    """The summary plus its heading in the system message."""
    return summary_tokens + 16 if summary_tokens else 0
