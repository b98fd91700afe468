"""The common send and a run's answer, each one statement on the event loop (memq/api/apg.py).

The send: the agent's row lock (scoped by tenant), the run and its inbox event in one
statement with data-modifying CTEs, committed on its own (autocommit). It also reads the
agent's newest message id (its "floor"): every message the new run's steps write comes
after it, so the run's answer is an index range over (agent_id, id) after the floor, not
a scan of every message of the agent.

It answers only what it can answer exactly as the repository would: Postgres, no
idempotency key or callback, text that is clean, not blank and short enough to fit any
window (memq/quick's rule). Everything else takes the repository path (memq/api/ops.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from memq.constants import EventType, RunStatus
from memq.quick.client import QUICK_MAX_CHARS
from memq.quick.pg import Row
from memq.text import clean_text
from storage.models import Run
from storage.repository.agents import AgentNotFound
from storage.repository.errors import NotFound

RUN_MESSAGES_LIMIT = 1000  # as storage.repository.pages.run_messages
# Columns are named, and rows read as tuples: no result description to build per statement.
RUN_COLUMNS = tuple(c.name for c in Run.__table__.columns)
MESSAGE_COLUMNS = ("id", "run_id", "step_no", "role", "content", "tool_calls", "tool_call_id", "created_at")
_RUN_LIST = ", ".join(RUN_COLUMNS)



def iso_utc_sql(expr: str) -> str:
    """SQL of a timestamptz as memq.isotime.iso_utc writes it (no fraction at a whole second)."""
    utc = f"({expr}) AT TIME ZONE 'UTC'"
    return (f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN extract(microseconds FROM {utc})::bigint"
            f" %% 1000000 = 0 THEN '' ELSE to_char({utc}, '.US') END || 'Z'")


# created_at is read after the lock (clock_timestamp(), not the statement's start), so the
# creation times of one agent's runs follow their arrival order; the event's "time" is that
# instant as iso_utc writes it.
_ENQUEUE = f"""
WITH agent AS (
    SELECT a.id, a.queue,
           (SELECT coalesce(max(m.id), 0) FROM messages m WHERE m.agent_id = a.id) AS floor
    FROM agents a WHERE a.id = %(agent_id)s AND a.tenant_id = %(tenant)s
    FOR UPDATE OF a
), run AS (
    INSERT INTO runs (id, agent_id, status, steps, replies, prompt_tokens, completion_tokens, cost_usd, created_at)
    SELECT %(run_id)s, agent.id, '{RunStatus.QUEUED.value}', 0, '[]', 0, 0, 0, clock_timestamp() FROM agent
    RETURNING {_RUN_LIST}
), event AS (
    INSERT INTO inbox (agent_id, run_id, event, created_at)
    SELECT run.agent_id, run.id, json_build_object(
        'type', '{EventType.USER_MESSAGE.value}', 'message', %(text)s::text,
        'time', {iso_utc_sql("run.created_at")}),
        run.created_at
    FROM run
)
SELECT {", ".join("run." + c for c in RUN_COLUMNS)}, agent.queue, agent.floor FROM run, agent
"""

# The run (of the tenant) and its messages after a message id, in one statement: one snapshot,
# so the messages are exactly what the run's status says was committed.
_RUN_MESSAGES = f"""
SELECT {", ".join("r." + c for c in RUN_COLUMNS)}, {", ".join("m." + c for c in MESSAGE_COLUMNS)}
FROM runs r JOIN agents a ON a.id = r.agent_id
LEFT JOIN LATERAL (
    SELECT * FROM messages
    WHERE agent_id = r.agent_id AND id > %(after)s AND run_id = r.id
    ORDER BY id LIMIT {RUN_MESSAGES_LIMIT}
) m ON true
WHERE r.id = %(run_id)s AND a.tenant_id = %(tenant)s
ORDER BY m.id
"""

_RUN_STATES = "SELECT id, status, steps FROM runs WHERE id = ANY(%s)"
_N = len(RUN_COLUMNS)


@dataclass
class Sent:
    run: Any  # the run's row (attributes as storage.models.Run)
    queue: str  # the agent's queue, to ring
    floor: int | None  # every message of the run has a greater id (None: unknown)


def applies(text: str, idempotency_key: str | None, callback_url: str | None, max_chars: int) -> bool:
    """Whether this send is one the statement writes exactly as the repository would (on Postgres)."""
    return (idempotency_key is None and callback_url is None and bool(text.strip())
            and len(text) <= min(QUICK_MAX_CHARS, max_chars) and clean_text(text)[1] is None)


async def enqueue(apg: Any, tenant: str, agent_id: str, text: str) -> Sent:
    """The new run, committed; AgentNotFound for an unknown or another tenant's agent."""
    rows = await apg.fetch(_ENQUEUE, {"agent_id": agent_id, "tenant": tenant, "run_id": str(uuid.uuid4()),
                                      "text": text})
    if not rows:
        raise AgentNotFound(agent_id)
    row = rows[0]
    return Sent(Row(dict(zip(RUN_COLUMNS, row))), row[_N], int(row[_N + 1]))


async def run_messages(apg: Any, tenant: str, run_id: str, after: int | None = None,
                       floor: int | None = None) -> tuple[Any, list[Any]]:
    """The run (NotFound for an unknown or another tenant's run) and the messages its steps
    wrote, oldest first, with ids above `after` and `floor`."""
    rows = await apg.fetch(_RUN_MESSAGES, {"run_id": run_id, "tenant": tenant, "after": max(after or 0, floor or 0)})
    if not rows:
        raise NotFound(f"unknown run: {run_id}")
    run = Row(dict(zip(RUN_COLUMNS, rows[0])))
    return run, [Row(dict(zip(MESSAGE_COLUMNS, r[_N:]))) for r in rows if r[_N] is not None]


async def run_states(apg: Any, run_ids: list[str]) -> dict[str, tuple[str, int]]:
    """(status, steps) of each run: the run watcher's one query per wake-up."""
    return {r[0]: (r[1], r[2]) for r in await apg.fetch(_RUN_STATES, (run_ids,))}
