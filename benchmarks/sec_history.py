"""Section 3, history scaling: a step with a long message history against one with a short one."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from benchmarks.env import mean, median
from benchmarks.harness import Bench

KEEP_IN_CONTEXT = 9  # three (user, assistant, tool) triples


def _message_tokens(b: Bench, msg: dict[str, Any]) -> int:
    """Tokens of one message as the worker counts them (workers.tokens), else ~chars/4."""
    counter = getattr(b.client.rt, "counter", None)
    if counter is not None:
        try:
            return int(counter.message(b.settings.llm_model or "gpt-4o-mini", msg))
        except Exception:  # noqa: BLE001 - an estimate is fine for history rows
            pass
    return 4 + sum(len(str(v)) for v in msg.values()) // 4


def insert_history(b: Bench, agent_id: str, n: int) -> dict[str, Any]:
    """COPY n messages straight into `messages`; only the last KEEP_IN_CONTEXT stay in context."""
    t0 = time.perf_counter()
    columns = {r[0]: r for r in b.db.query(
        "SELECT column_name, is_nullable, column_default FROM information_schema.columns "
        "WHERE table_name = 'messages' AND table_schema = current_schema()")}
    cols = ["agent_id", "run_id", "step_no", "role", "content", "tool_calls", "tool_call_id", "created_at"]
    if "tokens" in columns:
        cols.append("tokens")
    required = [c for c, (_, nullable, default) in columns.items()
                if nullable == "NO" and default is None and c not in cols]
    if required:
        raise RuntimeError(f"messages has required columns the history loader does not fill: {required}")
    start = datetime.now(timezone.utc) - timedelta(days=30)
    call_id0 = f"call_{agent_id[:8]}{0:010d}"
    user0 = json.dumps({"type": "user_message", "message": "Old message number 0: how was the weather "
                        "on the trip we talked about?", "time": start.isoformat()})
    args0 = json.dumps({"message": "Reply 0: it was sunny most days, as you said.", "request_heartbeat": False})
    calls0 = [{"id": call_id0, "type": "function", "function": {"name": "send_message", "arguments": args0}}]
    tool0 = json.dumps({"status": "OK", "message": "None", "time": start.isoformat()})
    # Token counts per kind of message, counted once (the rows differ only in a number).
    tokens = [
        _message_tokens(b, {"role": "user", "content": user0}),
        _message_tokens(b, {"role": "assistant", "content": "The user asks about the trip again.",
                            "tool_calls": calls0}),
        _message_tokens(b, {"role": "tool", "tool_call_id": call_id0, "content": tool0}),
    ]
    conn = b.db.conn
    with conn.cursor() as cur, cur.copy(f"COPY messages ({', '.join(cols)}) FROM STDIN") as cp:
        for j in range(n):
            kind = (j - n) % 3  # 0 user, 1 assistant, 2 tool: the newest message is a tool result
            turn = j // 3
            at = start + timedelta(seconds=j)
            iso = at.isoformat().replace("+00:00", "Z")
            call_id = f"call_{agent_id[:8]}{turn:010d}"
            if kind == 0:
                content = json.dumps({"type": "user_message", "message": f"Old message number {turn}: "
                                      "how was the weather on the trip we talked about?", "time": iso})
                row = [agent_id, None, turn, "user", content, None, None, at]
            elif kind == 1:
                args = json.dumps({"message": f"Reply {turn}: it was sunny most days, as you said.",
                                   "request_heartbeat": False})
                calls = json.dumps([{"id": call_id, "type": "function",
                                     "function": {"name": "send_message", "arguments": args}}])
                row = [agent_id, None, turn, "assistant", "The user asks about the trip again.", calls, None, at]
            else:
                content = json.dumps({"status": "OK", "message": "None", "time": iso})
                row = [agent_id, None, turn, "tool", content, None, call_id, at]
            if "tokens" in cols:
                row.append(tokens[kind])
            cp.write_row(row)
    start_id = b.db.query(
        "SELECT min(id) FROM (SELECT id FROM messages WHERE agent_id = %s ORDER BY id DESC LIMIT %s) t",
        (agent_id, KEEP_IN_CONTEXT),
    )[0][0]
    b.db.query(
        "UPDATE agents SET message_count = message_count + %s, context_start_id = %s WHERE id = %s",
        (n, start_id, agent_id),
    )
    b.db.query("ANALYZE messages")
    return {"rows": n, "load_s": time.perf_counter() - t0, "context_start_id": start_id}


def history(b: Bench) -> dict[str, Any]:
    from storage import repository as repo

    big = 10_000 if b.quick else 100_000
    b.llm.set_latency(0)
    out: dict[str, Any] = {"in_context_history": KEEP_IN_CONTEXT}
    for n in (10, big):
        agent = b.new_agent(f"bench-hist{n}")
        load = insert_history(b, agent.id, n)
        runs = [b.send_and_wait(agent.id, f"question {i}") for i in range(10)]
        bad = [r.status for r in runs if r.status != "done"]
        if bad:
            raise RuntimeError(f"history {n}: runs ended {bad}")
        j = b.journal(agent_id=agent.id)
        q = []
        for _ in range(20):
            t = time.perf_counter()
            with b.client.rt.db.transaction() as s:
                repo.context_messages(s, agent.id, load["context_start_id"])
            q.append((time.perf_counter() - t) * 1000)
        plan = b.db.query(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM messages "
            "WHERE agent_id = %s AND id >= %s ORDER BY id",
            (agent.id, load["context_start_id"]),
        )[0][0][0]

        def scan(node: dict) -> dict:
            while "Plans" in node and not node.get("Index Name") and "Scan" not in node.get("Node Type", ""):
                node = node["Plans"][0]
            return node

        leaf = scan(plan["Plan"])
        out[str(n)] = {
            **load,
            "context_plan": {
                "node": leaf.get("Node Type"),
                "index": leaf.get("Index Name"),
                "rows": plan["Plan"].get("Actual Rows"),
                "shared_buffers": plan["Plan"].get("Shared Hit Blocks", 0) + plan["Plan"].get("Shared Read Blocks", 0),
                "execution_ms": plan.get("Execution Time"),
            },
            "step_ms_median": median(r.wall_s * 1000 for r in runs),
            "step_ms_runs": [r.wall_s * 1000 for r in runs],
            "in_step_ms_mean": mean(x["in_step_ms"] for x in j),
            "prompt_messages_first": j[0]["prompt_messages"],
            "prompt_messages_last": j[-1]["prompt_messages"],
            "context_query_ms_median": median(q),
        }
    small, large = out["10"], out[str(big)]
    out["big"] = big
    out["ratio"] = large["step_ms_median"] / small["step_ms_median"]
    S = "3 history"
    b.add(S, f"single step, {big:,} messages of history (median of 10)", large["step_ms_median"], "ms",
          "same, 10 messages of history", small["step_ms_median"],
          f"prompt {large['prompt_messages_first']}→{large['prompt_messages_last']} msgs both; "
          f"COPY of {big:,} rows {large['load_s']:.1f} s")
    b.add(S, "in-step time (journal), mean", large["in_step_ms_mean"], "ms", "same, 10 messages",
          small["in_step_ms_mean"])
    lp, sp = large["context_plan"], small["context_plan"]
    b.add(S, "context query (repo.context_messages), median of 20", large["context_query_ms_median"], "ms",
          "same, 10 messages", small["context_query_ms_median"],
          f"plan: {lp['node']} on {lp['index']}, {lp['rows']} rows, {lp['shared_buffers']} buffers "
          f"(10-msg agent: {sp['node']}, {sp['shared_buffers']} buffers)")
    return out
