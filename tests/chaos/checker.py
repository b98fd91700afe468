"""The chaos checker: reads Postgres only and says whether every message was
processed exactly once, in order, by one step at a time.

Per agent it compares three sequences:
  sent      -- the order the sender sent the texts (the sender's own record)
  inbox     -- inbox rows ordered by id (arrival order as memq stored it)
  processed -- `user_message` events in `messages` ordered by id (what the agent saw)
and checks every run (one per idempotency key, replies == ["echo: <text>"]) and the
step journal (strictly increasing step_no, non-overlapping [started_at, finished_at],
non-decreasing lease tokens).
"""

from __future__ import annotations

import bisect
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select

FINISHED = {"done", "failed", "chain_capped"}


def lis_length(seq: list[int]) -> int:
    """Length of the longest strictly increasing subsequence (patience sorting)."""
    tails: list[int] = []
    for x in seq:
        i = bisect.bisect_left(tails, x)
        if i == len(tails):
            tails.append(x)
        else:
            tails[i] = x
    return len(tails)


def out_of_order(observed: list[str], expected: list[str]) -> int:
    """How many of `observed` must move to put them in `expected` order (unknowns ignored)."""
    pos = {t: i for i, t in enumerate(expected)}
    seen: set[str] = set()
    ranks = []
    for t in observed:
        if t in pos and t not in seen:
            seen.add(t)
            ranks.append(pos[t])
    return len(ranks) - lis_length(ranks)


@dataclass
class AgentReport:
    agent_id: str
    sent: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    overlapping: int = 0
    wrong_replies: int = 0
    failed_llm: int = 0
    failed_gave_up: int = 0
    failed_other: int = 0
    chain_capped: int = 0
    steps: int = 0
    problems: list[str] = field(default_factory=list)
    waits: list[tuple[int, datetime, datetime]] = field(default_factory=list)  # step_no, ready, started

    def note(self, msg: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(msg)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _event_text(content: str | None) -> tuple[str | None, str | None]:
    try:
        obj = json.loads(content or "")
    except ValueError:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    return obj.get("type"), obj.get("message")


def check_agent(
    s: Any, agent_id: str, sent: list[str], keys: dict[str, str], dup_send_mismatch: int = 0
) -> AgentReport:
    """Check one agent. sent: texts in send order; keys: text -> idempotency key."""
    from storage.models import InboxItem, Message, Run, StepRecord

    rep = AgentReport(agent_id, sent=len(sent))
    rep.duplicated += dup_send_mismatch
    if dup_send_mismatch:
        rep.note(f"{dup_send_mismatch} repeated send(s) with a known key returned a different run")

    inbox = list(s.execute(
        select(InboxItem.id, InboxItem.run_id, InboxItem.event, InboxItem.consumed_at, InboxItem.created_at)
        .where(InboxItem.agent_id == agent_id).order_by(InboxItem.id)
    ))
    runs = {r.id: r for r in s.scalars(select(Run).where(Run.agent_id == agent_id))}
    events = []  # (message id, run_id, text) of every user_message event, in id order
    event_step: dict[int, str] = {}  # step_no -> run_id of the user_message it took
    for mid, run_id, content, step_no in s.execute(
        select(Message.id, Message.run_id, Message.content, Message.step_no)
        .where(Message.agent_id == agent_id, Message.role == "user").order_by(Message.id)
    ):
        etype, text = _event_text(content)
        if etype == "user_message":
            events.append((mid, run_id, text))
            event_step[step_no] = run_id
    steps = list(s.execute(
        select(StepRecord.step_no, StepRecord.started_at, StepRecord.finished_at,
               StepRecord.lease_token, StepRecord.run_id)
        .where(StepRecord.agent_id == agent_id).order_by(StepRecord.step_no)
    ))
    rep.steps = len(steps)
    # How long each step's work waited with nobody stepping the agent: from when it
    # was there (the previous step's end, or the message's arrival) to the step's start.
    arrived = {row.run_id: _aware(row.created_at) for row in inbox}
    prev_end = None
    for st in steps:
        available = prev_end
        if st.step_no in event_step and event_step[st.step_no] in arrived:
            t = arrived[event_step[st.step_no]]
            available = t if available is None or t > available else available
        if available is not None:
            rep.waits.append((st.step_no, available, _aware(st.started_at)))
        prev_end = _aware(st.finished_at)

    sent_set = set(sent)
    inbox_texts = [(row.event or {}).get("message") for row in inbox]
    processed_texts = [t for _, _, t in events]

    # -- one run per key, one inbox row per text, one event per inbox row ---------
    runs_per_key = Counter(r.idempotency_key for r in runs.values() if r.idempotency_key)
    for key, n in runs_per_key.items():
        if n > 1:
            rep.duplicated += n - 1
            rep.note(f"{n} runs for idempotency key {key}")
    inbox_count = Counter(inbox_texts)
    for text, n in inbox_count.items():
        if n > 1:
            rep.duplicated += n - 1
            rep.note(f"{n} inbox rows for {text!r}")
        if text not in sent_set:
            rep.note(f"inbox row for a text never sent: {text!r}")
    events_per_run = Counter(run_id for _, run_id, _ in events)
    for row in inbox:
        text = (row.event or {}).get("message")
        n = events_per_run.get(row.run_id, 0)
        if n > 1:
            rep.duplicated += n - 1
            rep.note(f"{text!r} was processed {n} times (user_message events of run {row.run_id})")
    inbox_runs = {row.run_id for row in inbox}
    for mid, run_id, text in events:
        if run_id not in inbox_runs:
            rep.duplicated += 1
            rep.note(f"user_message event {mid} ({text!r}) belongs to no inbox row of this agent")
    for row in inbox:
        run = runs.get(row.run_id)
        if run is not None and run.idempotency_key and keys.get((row.event or {}).get("message")) not in (
            None, run.idempotency_key
        ):
            rep.note(f"run {run.id} carries key {run.idempotency_key}, expected {keys.get(row.event.get('message'))}")

    # -- nothing lost ----------------------------------------------------------
    inbox_by_text = {}
    for row in inbox:
        inbox_by_text.setdefault((row.event or {}).get("message"), row)
    for text in sent:
        row = inbox_by_text.get(text)
        if row is None:
            rep.lost += 1
            rep.note(f"{text!r}: sent, but no inbox row")
            continue
        run = runs.get(row.run_id)
        n = events_per_run.get(row.run_id, 0)
        if n == 0 or row.consumed_at is None or run is None or run.status not in FINISHED:
            rep.lost += 1
            rep.note(
                f"{text!r}: not processed (events={n}, consumed={row.consumed_at is not None}, "
                f"run status={run.status if run else None})"
            )
            continue
        # -- the run's outcome ------------------------------------------------------
        expected_reply = f"echo: {text}"
        replies = list(run.replies or [])
        if run.status == "done":
            if replies == [expected_reply]:
                pass
            elif replies and all(r == expected_reply for r in replies):
                rep.duplicated += len(replies) - 1
                rep.note(f"{text!r}: reply sent {len(replies)} times")
            else:
                rep.wrong_replies += 1
                rep.note(f"{text!r}: replies {replies!r}")
        elif run.status == "failed":
            err = run.error or ""
            if err.startswith("gave up"):
                rep.failed_gave_up += 1
            elif "LLM call failed" in err:
                rep.failed_llm += 1
            else:
                rep.failed_other += 1
            rep.note(f"{text!r}: run failed: {err[:160]}")
            if any(r != expected_reply for r in replies) or len(replies) > 1:
                rep.wrong_replies += 1
        else:
            rep.chain_capped += 1
            rep.note(f"{text!r}: run {run.status}: {(run.error or '')[:160]}")

    # -- in order ----------------------------------------------------------------
    known_inbox = [t for t in inbox_texts if t in sent_set]
    rep.reordered += out_of_order(known_inbox, sent)
    rep.reordered += out_of_order([t for t in processed_texts if t in sent_set], known_inbox)
    if rep.reordered:
        rep.note(f"out of order: inbox {known_inbox[:50]} processed {processed_texts[:50]}")

    # -- one step at a time --------------------------------------------------------
    prev = None
    for st in steps:
        if prev is not None:
            if st.step_no <= prev.step_no:
                rep.overlapping += 1
                rep.note(f"step_no {st.step_no} after {prev.step_no}")
            if _aware(st.started_at) < _aware(prev.finished_at):
                rep.overlapping += 1
                rep.note(
                    f"step {st.step_no} started {st.started_at.isoformat()} before step "
                    f"{prev.step_no} finished {prev.finished_at.isoformat()}"
                )
            if st.lease_token < prev.lease_token:
                rep.overlapping += 1
                rep.note(f"step {st.step_no} lease token {st.lease_token} < {prev.lease_token}")
        prev = st
    if steps and [st.step_no for st in steps] != list(range(1, len(steps) + 1)):
        rep.note(f"step numbers have gaps: {[st.step_no for st in steps][:30]}")
    # Every message of the record belongs to a committed step.
    orphan = s.scalar(
        select(func.count()).select_from(Message).where(
            Message.agent_id == agent_id,
            Message.step_no.is_not(None),
            ~Message.step_no.in_(select(StepRecord.step_no).where(StepRecord.agent_id == agent_id)),
        )
    )
    if orphan:
        rep.overlapping += orphan
        rep.note(f"{orphan} message(s) carry a step_no with no journal row")
    return rep


def check(db_url: str, sent: dict[str, list[str]], keys: dict[str, dict[str, str]],
          dup_send_mismatch: dict[str, int] | None = None) -> dict[str, Any]:
    """Check every agent; returns the totals and the first problems found."""
    from storage.db import Database

    db = Database(db_url, pool_size=2)
    try:
        with db.transaction() as s:
            reports = [check_agent(s, a, sent[a], keys.get(a, {}), (dup_send_mismatch or {}).get(a, 0))
                       for a in sent]
    finally:
        db.dispose()
    totals: dict[str, Any] = defaultdict(int)
    for r in reports:
        for k in ("sent", "lost", "duplicated", "reordered", "overlapping", "wrong_replies",
                  "failed_llm", "failed_gave_up", "failed_other", "chain_capped", "steps"):
            totals[k] += getattr(r, k)
    totals = dict(totals)
    totals["failed"] = totals["failed_llm"] + totals["failed_gave_up"] + totals["failed_other"]
    totals["notes"] = {r.agent_id: r.problems for r in reports if r.problems}
    totals["waits"] = [(r.agent_id, n, ready, started) for r in reports for n, ready, started in r.waits]
    return totals
