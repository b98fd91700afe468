"""Planning the context window: what stays, what is evicted, when to warn.

Pure functions over token counts, so the rules are easy to test exhaustively:
the prompt never exceeds the limit, an eviction never separates a tool call
from its result (cuts fall only before user-role messages, where each step's
messages begin), and the event being processed is never evicted (it is not
part of the history being planned). Neither is the event that started the
active run (the pinned event): the caller takes it out of the history, and
it counts as fixed, like the event, until the run ends. Only a pinned event
that cannot fit even beside an empty history is dropped (pin_dropped).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class ContextTooSmall(RuntimeError):
    """Even with the whole history evicted, the fixed part does not fit."""


@dataclass(frozen=True)
class Budget:
    window: int  # the model's context window, tokens
    reply_tokens: int  # reserved for the completion
    margin_tokens: int  # for the gap between our count and the provider's
    warn_ratio: float = 0.75
    target_ratio: float = 0.5

    @property
    def limit(self) -> int:
        """Prompt tokens allowed (tool schemas included)."""
        return self.window - self.reply_tokens - self.margin_tokens

    @property
    def summary_reserve(self) -> int:
        """The most tokens a summary may take."""
        return max(64, min(2000, self.limit // 10))


def budget_for(settings: Any, window: int) -> Budget:
    """The budget of a window under the settings (the step's, and the door's estimate)."""
    return Budget(
        window=window,
        reply_tokens=min(settings.llm_max_tokens, window // 4),
        margin_tokens=max(32, int(window * settings.context_margin_ratio)),
        warn_ratio=settings.context_warn_ratio,
        target_ratio=settings.context_target_ratio,
    )


@dataclass(frozen=True)
class WindowPlan:
    evict: int  # how many of the oldest history messages leave the context
    alert: bool  # give the memory-pressure alert in this step
    alerted_after: bool  # the agent's pressure_alerted flag after this step
    prompt_tokens: int  # estimate for the prompt as planned (before a new summary)
    pin_dropped: bool = False  # the pinned event does not fit: left out, and the alert says so


def cut_points(roles: Sequence[str]) -> list[int]:
    """Indices where the history may be cut: before a user-role message, or at the end."""
    return [i for i, role in enumerate(roles) if role == "user" and i > 0] + [len(roles)]


def plan_window(
    *,
    budget: Budget,
    base_tokens: int,
    summary_tokens: int,
    history_tokens: Sequence[int],
    history_roles: Sequence[str],
    event_tokens: int,
    alert_tokens: int,
    alerted: bool,
    force_evict: int = 0,
    pinned_tokens: int = 0,
) -> WindowPlan:
    """Decide evictions and the pressure alert for one step.

    base_tokens: system prompt without summary, plus tool schemas.
    force_evict: how many times the provider refused the prompt as too long;
    each refusal evicts at least one more group and halves the target.
    pinned_tokens: the pinned event (not in history_tokens), kept before any
    history message is; when even the fixed part and it exceed the limit it is
    dropped, and the alert (alert_tokens) is given to say so.
    """
    limit = budget.limit
    if pinned_tokens and base_tokens + budget.summary_reserve + event_tokens + pinned_tokens + alert_tokens > limit:
        plan = plan_window(budget=budget, base_tokens=base_tokens, summary_tokens=summary_tokens,
                           history_tokens=history_tokens, history_roles=history_roles,
                           event_tokens=event_tokens + alert_tokens, alert_tokens=0, alerted=True,
                           force_evict=force_evict)
        return WindowPlan(plan.evict, True, alerted, plan.prompt_tokens, pin_dropped=True)
    event_tokens += pinned_tokens
    kept = sum(history_tokens)
    total = base_tokens + summary_tokens + kept + event_tokens
    fits_with_alert = total + alert_tokens <= limit
    if not force_evict and total <= limit:
        if total > budget.warn_ratio * limit and not alerted and fits_with_alert:
            return WindowPlan(0, True, True, total + alert_tokens)
        still_high = total > budget.warn_ratio * limit
        return WindowPlan(0, False, alerted and still_high, total)
    # Flush: evict from the front until the prompt falls to the target ratio.
    target = budget.target_ratio * limit / (2**force_evict)
    fixed = base_tokens + budget.summary_reserve + event_tokens
    if fixed > limit:
        raise ContextTooSmall(
            f"the system prompt, core memory, summary reserve and the event need {fixed} tokens; "
            f"the window allows {limit} for the prompt (window {budget.window}, reply "
            f"{budget.reply_tokens}, margin {budget.margin_tokens})"
        )
    suffix = [0] * (len(history_tokens) + 1)
    for i in range(len(history_tokens) - 1, -1, -1):
        suffix[i] = suffix[i + 1] + history_tokens[i]
    points = cut_points(history_roles)
    if force_evict:
        points = [p for p in points if p > 0]
    choice = next((p for p in points if fixed + suffix[p] <= target), None)
    if choice is None:
        choice = next((p for p in points if fixed + suffix[p] <= limit), len(history_tokens))
    total = fixed + suffix[choice]
    # A jump straight past the warning line still gets the alert once, with the flush.
    alert = not alerted and total + alert_tokens <= limit
    return WindowPlan(choice, alert, False, total + (alert_tokens if alert else 0))
