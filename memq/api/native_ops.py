"""memq's own routes' work: batches of the caller's tenant, a run's step journal,
the tenant's usage. Plain blocking functions; routes run them on threadpool threads."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from memq.api import convert, ids
from memq.isotime import iso_utc
from storage import repository as repo
from storage.repository import batches as brepo
from storage.repository import pages
from storage.repository import usage as urepo


class NativeOps:
    def __init__(self, ops: Any) -> None:
        self.db = ops.db
        self.client = ops.client
        self.broker_problem = ops.broker_problem

    # -- batches --------------------------------------------------------------------
    def submit_batch(self, tenant: str, lines: list[str], *, create_agents: bool, skip_invalid: bool,
                     llm_mode: str = "normal") -> dict[str, Any]:
        from memq.api.errors import unavailable

        problem = self.broker_problem()
        if problem:
            raise unavailable(f"the broker is unreachable ({problem}); nothing was queued, retry later")
        out = self.client.submit_batch(lines, create_agents=create_agents, skip_invalid=skip_invalid,
                                       source="http", tenant_id=tenant, llm_mode=llm_mode)
        return {**out, "batch_id": ids.wire_batch(out["batch_id"])}

    def _own(self, tenant: str, batch_id: str) -> None:
        with self.db.transaction() as s:
            brepo.get_batch(s, batch_id, tenant_id=tenant)

    def batch_status(self, tenant: str, batch_id: str) -> dict[str, Any]:
        self._own(tenant, batch_id)
        doc = self.client.batch_status(batch_id).model_dump()
        return {**doc, "batch_id": ids.wire_batch(batch_id)}

    def batch_results(self, tenant: str, batch_id: str) -> list[dict[str, Any]]:
        self._own(tenant, batch_id)
        rows = self.client.batch_results(batch_id)
        for row in rows:
            row["agent_id"] = ids.wire_agent(row["agent_id"]) if row["agent_id"] else None
            row["run_id"] = ids.wire_run(row["run_id"]) if row["run_id"] else None
        return rows

    def cancel_batch(self, tenant: str, batch_id: str) -> dict[str, Any]:
        self._own(tenant, batch_id)
        return {**self.client.cancel_batch(batch_id), "batch_id": ids.wire_batch(batch_id)}

    # -- journal and usage ------------------------------------------------------------
    def run_steps(self, tenant: str, run_id: str) -> dict[str, Any]:
        with self.db.transaction() as s:
            run = repo.get_run(s, run_id, tenant_id=tenant)
            steps = [{
                "step_no": r.step_no, "started_at": iso_utc_or_none(r.started_at),
                "finished_at": iso_utc_or_none(r.finished_at), "prompt_messages": r.prompt_messages,
                "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                "llm_latency_ms": round(r.llm_latency_ms, 3), "llm_attempts": r.llm_attempts,
                "tool": r.tool_name, "outcome": r.outcome, "error": r.error, "cost_usd": r.cost_usd,
                "context_tokens": r.context_tokens, "evicted_messages": r.evicted_messages, "worker": r.worker,
                "llm_mode": r.llm_mode,
            } for r in urepo.run_steps(s, run_id)]
            doc = {"run": convert.run(run), "steps": steps, "llm_mode": run.llm_mode}
            if run.llm_mode == "provider_batch":  # the batch price against the normal route's
                from storage.repository.parked import run_saving

                doc["provider_batch"] = run_saving(s, run_id)
            return doc

    def usage(self, tenant: str, *, start: datetime | None, end: datetime | None, agent_id: str | None) -> dict[str, Any]:
        with self.db.transaction() as s:
            if agent_id is not None:
                repo.get_agent(s, agent_id, tenant_id=tenant)
            rows = urepo.usage_by_agent_day(s, tenant, start=start, end=end, agent_id=agent_id)
        agents: dict[str, dict[str, Any]] = {}
        total = {"steps": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost_usd": 0.0}
        for row in rows:
            row["agent_id"] = ids.wire_agent(row["agent_id"])
            row["total_tokens"] = row["prompt_tokens"] + row["completion_tokens"]
            per = agents.setdefault(row["agent_id"], {"agent_id": row["agent_id"], "agent_name": row["agent_name"],
                                                      **{k: type(v)() for k, v in total.items()}})
            for key in total:
                per[key] += row[key]
                total[key] += row[key]
        return {"days": rows, "agents": list(agents.values()), "total": total,
                "from": iso_utc_or_none(start), "to": iso_utc_or_none(end)}


def iso_utc_or_none(dt: datetime | None) -> str | None:
    return iso_utc(dt) if dt is not None else None


def jsonl(rows: list[dict[str, Any]]) -> Any:
    for row in rows:
        yield json.dumps(row) + "\n"


def callback_document(db: Any, run_id: str) -> dict[str, Any]:
    """What a callback POSTs: the finished run (as runs.retrieve shows it), its messages and usage."""
    with db.transaction() as s:
        run = repo.get_run(s, run_id)
        rows = pages.run_messages(s, run_id)
        return {**convert.run(run), "messages": convert.messages(rows, include_user=False),
                "usage": convert.usage(run)}
