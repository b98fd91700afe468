"""One heartbeat of one agent, top to bottom (DESIGN §2).

    1. take the agent's lease (fencing token)        -- else return: the holder goes on
    2. pick the event: pending heartbeat, else the oldest inbox message
    3. compile the context
    4. call the LLM (timeouts, retries with backoff)
    5. execute exactly one tool call
    6. commit everything in one transaction fenced by lease token + step counter
    7. release the lease, then report whether more work waits (the caller re-rings)
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any
from datetime import datetime

from sqlalchemy.orm import Session

from memq.constants import EventType, Role, RunStatus, StepOutcome, ToolStatus
from storage import repository as repo
from storage.models import Message, utcnow
from workers.context import CompiledContext, message_to_llm
from workers.events import now_iso, pack_event, pack_tool_result
from workers.history import HistoryCache
from workers import provider_batch
from workers.llm import ContextTooLong, LLMError, LLMReply
from workers.prompts import HEARTBEAT_AFTER_FAILURE, HEARTBEAT_REQUESTED
from workers.runtime import Runtime
from workers.step_guards import cleaned_reply, error_reason, transient_db_error
from workers.step_writes import JournalRow, context_state, turn_writes
from workers.tools import Block, ToolContext
from workers.window import ContextTooSmall

log = logging.getLogger("memq.step")

# How often a step compacts further after the provider refuses a prompt as too long.
MAX_COMPACTIONS = 2
ONE_TOOL_PER_STEP = "Not executed: only the first tool call of a reply runs. Call it again on its own."


@dataclass(frozen=True)
class StepResult:
    """What happened to one doorbell."""

    agent_id: str
    ran: bool
    reason: str  # "leased" | "no_work" | "stale" | "committed" | "crashed"
    run_id: str | None = None
    run_status: RunStatus | None = None
    more_work: bool = False
    record: JournalRow | None = None  # the journal row of a committed step
    takeover: bool = False  # the lease was taken from a holder that never finished
    released: bool = False  # the commit released the lease (and set more_work) itself


@dataclass
class _Turn:
    """Everything the step loaded under the lease (read in one short transaction)."""

    agent: Any  # a read-only row of agents
    run: Any  # a read-only row of runs
    blocks: dict[str, Block]
    history: list[Message]
    event: str
    inbox_id: int | None  # the inbox event this step consumes; None for a heartbeat
    pinned: str | None = None  # the event that started the run, kept in view (None on its first step)


@dataclass
class _Outcome:
    """What the step will commit."""

    messages: list[Message] = field(default_factory=list)
    status: RunStatus = RunStatus.DONE
    heartbeat_reason: str | None = None
    error: str | None = None
    step_outcome: StepOutcome = StepOutcome.NO_TOOL
    tool_name: str | None = None


def run_step(rt: Runtime, agent_id: str) -> StepResult:
    """Run at most one step of the agent; safe to call for any doorbell, any number of times.

    Taking the lease and loading the turn need no transaction of their own (the
    lease makes the agent's state ours; on Postgres they run as autocommit
    statements); then one transaction commits the step, releases the lease and
    looks for more work. (A step that commits nothing releases on its own.)
    """
    taken = _lease_and_load(rt, agent_id)
    if taken is None:
        return StepResult(agent_id, ran=False, reason="leased")
    lease, turn = taken
    result = StepResult(agent_id, ran=False, reason="crashed")
    error: str | None = None
    database_failed = False
    try:
        if turn is None:
            result = StepResult(agent_id, ran=False, reason="no_work")
        elif lease.attempts > rt.settings.step_max_attempts:
            result = _give_up(rt, lease, turn)
        else:
            result = _step_under_lease(rt, lease, turn)
    except BaseException as exc:
        error = f"step attempt {lease.attempts} failed: {error_reason(exc)}"  # shown by `memq agent show`
        database_failed = transient_db_error(exc)  # not the event's fault: not counted toward giving up
        raise
    finally:
        rt.leases.drop(lease)
        if not result.released:
            with rt.db.autocommit() as s:
                more = _release(s, lease, reset_attempts=result.reason == "no_work", error=error,
                                uncounted=database_failed)
            result = replace(result, more_work=more)
    return replace(result, takeover=lease.attempts > 1)


def _lease_and_load(rt: Runtime, agent_id: str) -> tuple[repo.Lease, _Turn | None] | None:
    """Take the agent's lease and load its turn (None: the lease is held elsewhere).

    The lease is held (renewed) from here until run_step drops it. A load that
    fails gives the lease back at once, as an attempt that failed.
    """
    with rt.db.autocommit() as s:
        taken = repo.acquire_lease_with_agent(
            s, agent_id, owner=rt.worker_id, lease_s=rt.settings.lease_s, now_s=time.time()
        )
        if taken is None:
            return None
        rt.leases.hold(taken.lease)
        try:
            return taken.lease, _load_turn(s, taken.agent, rt.history)
        except BaseException as exc:
            rt.leases.drop(taken.lease)
            _release_after_failed_load(rt, taken.lease, f"loading the turn failed: {error_reason(exc)}",
                                       uncounted=transient_db_error(exc))
            raise


def _release_after_failed_load(rt: Runtime, lease: repo.Lease, error: str, *, uncounted: bool) -> None:
    try:
        with rt.db.autocommit() as s:
            repo.release_lease(s, lease, now_s=time.time(), error=error, uncounted=uncounted)
    except Exception as exc:  # the database is away: the lease expires instead
        log.warning("could not release the lease of agent %s after a failed load: %s", lease.agent_id, exc)


def _release(s: Session, lease: repo.Lease, *, reset_attempts: bool = False, error: str | None = None,
             uncounted: bool = False) -> bool:
    """Release the lease, then report whether work is waiting.

    The check comes after the release has committed (autocommit on Postgres;
    one transaction on SQLite, which has one writer at a time): an event whose
    doorbell bounced off our lease is seen here and answered by our re-ring; a
    send that commits later rings a doorbell that finds the lease free.
    """
    repo.release_lease(s, lease, now_s=time.time(), reset_attempts=reset_attempts, error=error, uncounted=uncounted)
    return repo.has_pending_work(s, lease.agent_id)


def _load_turn(s: Session, agent: Any, history_cache: HistoryCache) -> _Turn | None:
    """The agent's run, event, core memory and in-context messages, as plain rows
    (read-only snapshots with attribute access: no ORM identity map on the hot path).

    agent: the row the lease was taken with. None when no work waits.
    """
    if agent.active_run_id:
        run, blocks = repo.active_turn(s, agent.active_run_id)
        event = pack_event(EventType.HEARTBEAT, agent.heartbeat_reason or HEARTBEAT_REQUESTED)
        inbox_id = None
        # The run's event as its first step stored it (the same JSON text).
        pinned = None if run.trigger_event is None else json.dumps(run.trigger_event, ensure_ascii=False)
    else:
        taken = repo.next_event_turn(s, agent.id)  # the run's row carries its inbox event
        if taken is None:
            return None
        run, blocks = taken
        event = json.dumps(run.inbox_event, ensure_ascii=False)
        inbox_id, pinned = run.inbox_id, None
    start = agent.context_start_id
    history = history_cache.load(
        agent.id, start, lambda known: repo.context_messages(s, agent.id, start, known_through=known))
    return _Turn(agent, run, {label: Block(value, limit) for label, value, limit in blocks}, history, event,
                 inbox_id, pinned)


def _step_under_lease(rt: Runtime, lease: repo.Lease, turn: _Turn) -> StepResult:
    started_at = utcnow()
    tool_ctx = ToolContext(
        turn.agent.id, turn.blocks, memory=rt.memory, max_passage_chars=rt.settings.max_message_chars
    )
    # llm_mode=provider_batch (workers/provider_batch.py): resume with the reply a provider batch
    # stored for this step, or park the compiled request and end the step here.
    batch = provider_batch.gate(rt, lease, turn)
    try:
        if batch.waits:
            raise provider_batch.Parked()
        context, reply, outcome = batch.stored or _think(rt, turn, park=batch.park)
    except provider_batch.Parked:
        more = provider_batch.release_parked(rt, lease)
        return StepResult(lease.agent_id, False, "parked", turn.run.id, more_work=more, released=True)
    reply = cleaned_reply(reply)
    if outcome is None:
        outcome = _act(rt, turn, reply, tool_ctx)
    steps = turn.run.steps + 1
    if outcome.status is RunStatus.RUNNING and steps >= rt.settings.max_chain:
        outcome.status = RunStatus.CHAIN_CAPPED
        outcome.error = f"stopped after {steps} chained steps (MEMQ_MAX_CHAIN={rt.settings.max_chain})"
        outcome.heartbeat_reason = None
    try:
        record, passages, more = _commit(rt, lease, turn, outcome, reply, tool_ctx, context, started_at)
    except repo.StaleLease as exc:
        log.warning("step discarded: %s", exc)
        return StepResult(lease.agent_id, ran=False, reason="stale")
    except Exception as exc:
        if transient_db_error(exc):
            raise
        return _commit_placeholder(rt, lease, turn, reply, exc)
    _index_after_commit(rt, passages)
    return StepResult(lease.agent_id, True, "committed", turn.run.id, outcome.status, more, record, released=True)


def _index_after_commit(rt: Runtime, passages: list) -> None:
    """Vectors are derived data: written after the commit; the indexer retries failures."""
    if not passages:
        return
    try:
        rt.memory.index_passages(passages)
    except Exception as exc:
        log.warning("indexing %d passage(s) deferred to the background indexer: %s", len(passages), exc)


def _think(
    rt: Runtime, turn: _Turn, park: Any = None
) -> tuple[CompiledContext | None, LLMReply, _Outcome | None]:
    """Compile the context and call the model; compact harder if the provider says too long.

    Returns the context sent, the reply, and an outcome only when the run fails here.
    park: given for a provider_batch step, stores the compiled request instead (raises Parked).
    """
    no_reply = LLMReply(content=None, tool_calls=[], attempts=0)
    context = None
    for force in range(MAX_COMPACTIONS + 1):
        try:
            context = rt.context.build(turn.agent, turn.blocks, turn.history, turn.event, force_evict=force,
                                       pinned=turn.pinned)
        except ContextTooSmall as exc:
            return context, no_reply, _failed(turn.event, str(exc), str(exc), StepOutcome.LLM_FAILED)
        if park is not None:
            park(context)
        try:
            reply = rt.llm.complete(
                context.messages, rt.tools.schemas, model=turn.agent.model, prompt_tokens=context.tokens
            )
            return context, reply, None
        except ContextTooLong as exc:
            error: LLMError = exc
            log.warning("provider refused the prompt as too long (%d tokens estimated); compacting", context.tokens)
        except LLMError as exc:
            error = exc
            break
    alert = f"The model could not be reached for the event above, which went unanswered: {error}"
    reply = LLMReply(content=None, tool_calls=[], attempts=error.attempts)
    return context, reply, _failed(turn.event, str(error), alert, StepOutcome.LLM_FAILED)


def _act(rt: Runtime, turn: _Turn, reply: LLMReply, tool_ctx: ToolContext) -> _Outcome:
    """Record the assistant message and execute its first tool call."""
    calls = reply.tool_calls
    assistant = Message(
        role=Role.ASSISTANT.value,
        content=reply.content,
        tool_calls=[c.as_openai() for c in calls] or None,
    )
    outcome = _Outcome(messages=[Message(role=Role.USER.value, content=turn.event), assistant])
    if not calls:
        # No tool call: the text is inner monologue and the turn ends (no reply).
        return outcome
    first = calls[0]
    result = rt.tools.execute(tool_ctx, first.name, first.arguments)
    outcome.tool_name = first.name
    outcome.messages.append(_tool_message(first.id, result.status, result.message))
    for extra in calls[1:]:
        outcome.messages.append(_tool_message(extra.id, ToolStatus.FAILED, ONE_TOOL_PER_STEP))
    failed = result.status is ToolStatus.FAILED or len(calls) > 1
    outcome.step_outcome = StepOutcome.TOOL_FAILED if failed else StepOutcome.TOOL_OK
    if failed:
        outcome.status, outcome.heartbeat_reason = RunStatus.RUNNING, HEARTBEAT_AFTER_FAILURE
    elif result.heartbeat_requested:
        outcome.status, outcome.heartbeat_reason = RunStatus.RUNNING, HEARTBEAT_REQUESTED
    return outcome


def _tool_message(call_id: str, status: ToolStatus, text: str) -> Message:
    return Message(role=Role.TOOL.value, content=pack_tool_result(status, text), tool_call_id=call_id)


def _failed(event: str, error: str, alert: str, step_outcome: StepOutcome) -> _Outcome:
    """The run fails: the event stays in the record with a system alert that says why."""
    alert_msg = pack_event(EventType.SYSTEM_ALERT, alert, now_iso())
    return _Outcome(
        messages=[Message(role=Role.USER.value, content=event), Message(role=Role.USER.value, content=alert_msg)],
        status=RunStatus.FAILED,
        error=error,
        step_outcome=step_outcome,
    )


def _give_up(rt: Runtime, lease: repo.Lease, turn: _Turn) -> StepResult:
    """A step that died on every attempt (a poison event): fail its run and move on."""
    error = (
        f"gave up: the step for this event was attempted {lease.attempts - 1} times "
        "and never completed (the worker crashed or the step raised every time)"
    )
    outcome = _failed(turn.event, error, error, StepOutcome.GAVE_UP)
    reply = LLMReply(content=None, tool_calls=[], attempts=0)
    try:
        record, _, more = _commit(rt, lease, turn, outcome, reply, ToolContext(turn.agent.id, {}), None, utcnow())
    except repo.StaleLease:
        return StepResult(lease.agent_id, ran=False, reason="stale")
    except Exception as exc:
        if transient_db_error(exc):
            raise
        return _commit_placeholder(rt, lease, turn, reply, exc, gave_up=error)
    return StepResult(lease.agent_id, True, "committed", turn.run.id, outcome.status, more, record, released=True)


def _commit_placeholder(
    rt: Runtime, lease: repo.Lease, turn: _Turn, reply: LLMReply, exc: Exception, *, gave_up: str | None = None
) -> StepResult:
    """The step's content could not be stored: commit a failure that can be.

    The run fails with the error; the event is consumed and recorded as a
    placeholder (never the text that could not be stored) with a system_alert;
    nothing the step did is kept. Raises if even this cannot be committed.
    """
    reason = error_reason(exc)
    log.warning("agent %s: the step could not be stored (%s); recording a placeholder", lease.agent_id, reason)
    try:
        kind = json.loads(turn.event).get("type") or EventType.USER_MESSAGE.value
    except (ValueError, AttributeError):
        kind = EventType.USER_MESSAGE.value
    placeholder = json.dumps({"type": kind, "message": f"[message could not be stored: {reason}]",
                              "time": now_iso()}, ensure_ascii=False)
    error = f"{gave_up}; " if gave_up else ""
    error += f"the step could not be stored: {reason}"
    alert = (f"The event above could not be stored ({reason}); it is kept as this placeholder and went "
             "unanswered.")
    outcome = _failed(placeholder, error, alert, StepOutcome.COMMIT_FAILED)
    empty = ToolContext(turn.agent.id, {})
    try:
        record, _, more = _commit(rt, lease, turn, outcome, reply, empty, None, utcnow())
    except repo.StaleLease:
        return StepResult(lease.agent_id, ran=False, reason="stale")
    return StepResult(lease.agent_id, True, "committed", turn.run.id, outcome.status, more, record, released=True)


def _commit(
    rt: Runtime,
    lease: repo.Lease,
    turn: _Turn,
    outcome: _Outcome,
    reply: LLMReply,
    tool_ctx: ToolContext,
    context: CompiledContext | None,
    started_at: datetime,
) -> tuple[JournalRow, list, bool]:
    agent_id, run = turn.agent.id, turn.run
    messages = outcome.messages
    if context is not None and context.alert:
        messages.insert(0, Message(role=Role.USER.value, content=context.alert))
    model = turn.agent.model or rt.settings.llm_model or "gpt-4o-mini"
    for m in messages:
        m.tokens = rt.counter.message(model, message_to_llm(m))
    active_run_id = None if outcome.status.finished else run.id
    finished_at = utcnow()
    writes = turn_writes(rt.worker_id, lease, turn, outcome, reply, tool_ctx, context, messages,
                         started_at=started_at, finished_at=finished_at)
    advance = {"now_s": time.time(), "active_run_id": active_run_id, "heartbeat_reason": outcome.heartbeat_reason,
               "new_messages": len(messages), "context": context_state(context)}
    passages: list = []
    if not tool_ctx.changed_blocks and not tool_ctx.new_passages:
        # The common step: fence + release, then the turn's rows (storage/repository/turn_commit.py).
        with rt.db.autocommit() as s:
            inbox_waits = repo.commit_turn(s, lease, writes, **advance)
    else:
        with rt.db.transaction() as s:
            # First, so its row lock queues a stale worker's commit behind this one:
            # fence (StaleLease), where the turn stands, and the release.
            repo.advance_and_release(s, lease, **advance)
            repo.save_block_values(s, agent_id, tool_ctx.changed_blocks)
            if tool_ctx.new_passages:
                passages = rt.memory.add_passages(s, agent_id, tool_ctx.new_passages)
            # Last, under the row lock: more work is this turn's heartbeat or a waiting event.
            inbox_waits = repo.write_turn(s, writes)
    rt.run_events.publish(run.id, outcome.status.value, run.steps + 1)  # after the commit: wakes API waiters
    return JournalRow(**writes.journal), passages, active_run_id is not None or inbox_waits
