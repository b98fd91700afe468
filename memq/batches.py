"""Batches in the Python client: validate a JSONL file, submit it, follow it, read results.

Every line is validated before anything is written; with skip_invalid the bad
lines are kept as results with their error instead of stopping the batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from memq.constants import Queue, RunStatus
from memq.text import stored_text, stored_value
from storage.repository.errors import BadInput

AGENT_FIELDS = {"name", "persona", "human", "model"}


class BatchInvalid(BadInput):
    """Lines that failed validation; nothing was enqueued."""

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        self.errors = errors
        shown = "; ".join(f"line {n}: {e}" for n, e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{len(errors)} invalid line(s): {shown}{more}")


@dataclass
class Line:
    line: int
    item_id: str | None = None
    agent_id: str | None = None
    agent: dict[str, str] | None = None
    message: str | None = None
    errors: list[str] = field(default_factory=list)


def parse_line(number: int, raw: str, *, create_agents: bool, max_chars: int) -> Line:
    """One JSONL line -> Line (errors collected, never raised)."""
    item = Line(number)
    try:
        obj = json.loads(stored_text(raw, f"line {number}"))
    except json.JSONDecodeError as exc:
        item.errors.append(f"not valid JSON ({exc.msg})")
        return item
    if not isinstance(obj, dict):
        item.errors.append("must be a JSON object")
        return item
    obj = stored_value(obj, f"line {number}")  # U+FFFD for what cannot be stored, with a warning
    allowed = {"id", "message", "agent_id"} | ({"agent"} if create_agents else set())
    unknown = sorted(set(obj) - allowed)
    if unknown:
        hint = " (use --create-agents for 'agent')" if "agent" in unknown else ""
        item.errors.append(f"unknown field(s): {', '.join(unknown)}{hint}")
    if "id" in obj:
        if isinstance(obj["id"], (str, int)) and not isinstance(obj["id"], bool):
            item.item_id = str(obj["id"])
        else:
            item.errors.append("'id' must be a string or integer")
    message = obj.get("message")
    if not isinstance(message, str) or not message.strip():
        item.errors.append("'message' must be a non-empty string")
    elif len(message) > max_chars:
        item.errors.append(f"'message' has {len(message)} characters; the limit is {max_chars}")
    else:
        item.message = message
    has_id, has_agent = "agent_id" in obj, "agent" in obj and create_agents
    if has_id == has_agent:
        item.errors.append("give exactly one of 'agent_id'" + (" or 'agent'" if create_agents else ""))
    elif has_id:
        if isinstance(obj["agent_id"], str) and obj["agent_id"]:
            item.agent_id = obj["agent_id"]
        else:
            item.errors.append("'agent_id' must be a non-empty string")
    else:
        spec = obj["agent"]
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"].strip():
            item.errors.append("'agent' must be an object with a non-empty 'name'")
        elif set(spec) - AGENT_FIELDS or not all(isinstance(v, str) for v in spec.values()):
            item.errors.append(f"'agent' takes string fields {', '.join(sorted(AGENT_FIELDS))}")
        else:
            item.agent = spec
    _check_lengths(item)
    return item


def _resolve_line_agent(session: Any, item: Line) -> None:
    from storage.repository.errors import NotFound
    from storage.repository.resolve import resolve_agent

    try:
        item.agent_id = resolve_agent(session, item.agent_id or "")
    except (NotFound, BadInput) as exc:
        item.errors.append(str(exc))


def _check_lengths(item: Line) -> None:
    """The bounded columns a line fills, checked here so the error names the line."""
    from storage.limits import ValueTooLong, check_value, limit_of

    spec = item.agent or {}
    for name, value, column in (("'id'", item.item_id, ("batch_items", "item_id")),
                                ("agent 'name'", spec.get("name"), ("agents", "name")),
                                ("agent 'model'", spec.get("model"), ("agents", "model"))):
        try:
            check_value(name, value, limit_of(*column))
        except ValueTooLong as exc:
            item.errors.append(str(exc))


def parse_jsonl(lines: Iterable[str], *, create_agents: bool, max_chars: int) -> list[Line]:
    out = []
    for number, raw in enumerate(lines, start=1):
        if raw.strip():
            out.append(parse_line(number, raw, create_agents=create_agents, max_chars=max_chars))
    return out


class BatchStatus(BaseModel):
    batch_id: str
    total: int
    invalid: int
    cancelled: bool
    finished: bool
    counts: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    # llm_mode=provider_batch: its steps by ParkState (parked / submitted / answered / resumed ...),
    # the provider batches that carried them, and what the normal route would have cost.
    provider_steps: dict[str, int] = {}
    provider_batch_ids: list[str] = []
    normal_cost_usd: float | None = None


class BatchOps:
    """Batch methods of the client; needs self.rt, self.doorbell and create_agent."""

    rt: Any
    doorbell: Any

    def submit_batch(
        self, lines: Iterable[str], *, create_agents: bool = False, skip_invalid: bool = False, source: str | None = None,
        tenant_id: str | None = None, llm_mode: str = "normal",
    ) -> dict[str, Any]:
        """Validate every line, then enqueue the valid ones in line order; returns {"batch_id", ...}.

        With tenant_id (the HTTP API), lines name only that tenant's agents, by id
        (`agent-<uuid>` or `<uuid>`), and the batch and the agents it creates are the tenant's."""
        from memq.defaults import DEFAULT_HUMAN, DEFAULT_PERSONA
        from storage import repository as repo
        from storage.repository import batches as brepo

        from memq.provider_batch_client import checked_mode
        from storage.repository.parked import set_run_mode

        settings = self.rt.settings
        mode = checked_mode(settings, llm_mode)  # provider_batch: every run's steps go through provider batches
        items = parse_jsonl(lines, create_agents=create_agents, max_chars=settings.max_message_chars)
        if not items:
            raise BadInput("the batch has no lines")
        with self.rt.db.transaction() as s:
            known = {a.id for a in repo.list_agents(s, tenant_id)} if any(i.agent_id for i in items) else set()
            for item in items:
                if item.agent_id and tenant_id is not None:
                    item.agent_id = item.agent_id.removeprefix("agent-")
                    if item.agent_id not in known:
                        item.errors.append(f"unknown agent: {item.agent_id}")
                elif item.agent_id and item.agent_id not in known:
                    _resolve_line_agent(s, item)  # a unique id prefix or an agent's name
            _check_fits(settings, s, items)
            bad = [i for i in items if i.errors]
            if bad and not skip_invalid:
                raise BatchInvalid([(i.line, "; ".join(i.errors)) for i in bad])
            batch = brepo.create_batch(s, source=source, total=len(items), invalid=len(bad),
                                       **({"tenant_id": tenant_id} if tenant_id else {}))
            created: dict[str, str] = {}
            for item in items:  # agents this batch creates, one per name
                if item.errors or item.agent is None:
                    continue
                name = item.agent["name"]
                if name not in created:
                    created[name] = repo.create_agent(
                        s,
                        name=name,
                        blocks={"persona": item.agent.get("persona") or DEFAULT_PERSONA,
                                "human": item.agent.get("human") or DEFAULT_HUMAN},
                        limit_chars=settings.core_block_limit_chars,
                        model=item.agent.get("model"),
                        queue=Queue.BATCH.value,
                        **({"tenant_id": tenant_id} if tenant_id else {}),
                    ).id
                item.agent_id = created[name]
            valid = [i for i in items if not i.errors]
            run_ids = repo.enqueue_many(s, [(i.agent_id, i.message) for i in valid],
                                        max_chars=settings.max_message_chars, batch_id=batch.id)
            set_run_mode(s, list(run_ids), mode)
            run_of = {id(i): rid for i, rid in zip(valid, run_ids)}
            brepo.add_items(s, batch.id, [
                {"line": i.line, "item_id": i.item_id, "agent_id": i.agent_id, "message": i.message,
                 "run_id": run_of.get(id(i)), "error": "; ".join(i.errors) or None} for i in items])
            agents_queued = dict.fromkeys(i.agent_id for i in valid)
            batch_id = batch.id
        # One doorbell per agent: each step rings again while its inbox is not empty.
        for agent_id in agents_queued:
            self.doorbell.ring(agent_id, Queue.BATCH.value)
        return {"batch_id": batch_id, "total": len(items), "enqueued": len(items) - len(bad),
                "invalid": len(bad), "agents_created": len(created)}

    def batch_status(self, batch_id: str) -> BatchStatus:
        from storage.repository import batches as brepo

        from storage.repository import parked as parked_repo

        with self.rt.db.transaction() as s:
            batch = brepo.get_batch(s, batch_id)
            counts = brepo.batch_counts(s, batch_id)
            provider = parked_repo.batch_summary(s, batch_id)
        by_status = counts["by_status"]
        pending = sum(n for st, n in by_status.items() if not RunStatus(st).finished)
        return BatchStatus(
            batch_id=batch_id, total=batch.total, invalid=batch.invalid, cancelled=batch.cancelled,
            finished=pending == 0, counts=by_status, prompt_tokens=counts["prompt_tokens"],
            completion_tokens=counts["completion_tokens"], cost_usd=counts["cost_usd"],
            provider_steps=provider["steps"],
            provider_batch_ids=[b["provider_batch_id"] for b in provider["provider_batches"] if b["provider_batch_id"]],
            normal_cost_usd=(counts["cost_usd"] - provider["batch_cost_usd"] + provider["normal_cost_usd"]
                             if provider["steps"] else None),
        )

    def batch_results(self, batch_id: str) -> list[dict[str, Any]]:
        """One row per input line, in line order."""
        from storage.repository import batches as brepo

        with self.rt.db.transaction() as s:
            brepo.get_batch(s, batch_id)
            rows = brepo.batch_rows(s, batch_id)
            return [
                {
                    "line": item.line,
                    "id": item.item_id,
                    "agent_id": item.agent_id,
                    "message": item.message,
                    "run_id": item.run_id,
                    "status": run.status if run else "invalid",
                    "replies": list(run.replies or []) if run else [],
                    "error": (run.error if run else item.error),
                    "prompt_tokens": run.prompt_tokens if run else 0,
                    "completion_tokens": run.completion_tokens if run else 0,
                    "cost_usd": run.cost_usd if run else 0.0,
                }
                for item, run in rows
            ]

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        from storage.repository import batches as brepo, pages, parked as parked_repo

        with self.rt.db.transaction() as s:
            run_ids = brepo.cancel_batch_runs(s, batch_id)
            # Parked steps of those runs are cancelled; provider batches holding nothing else are
            # cancelled at the provider by the beat's collector.
            _, provider_batches = parked_repo.cancel_for_batch(s, batch_id, run_ids)
            states = pages.run_states(s, run_ids)
        self.rt.run_events.publish_many(states)  # as a step's commit does: their waiters end at once
        return {"batch_id": batch_id, "cancelled_runs": len(run_ids), "cancelled_provider_batches": len(provider_batches)}


def _check_fits(settings: Any, session: Any, items: list[Any]) -> None:
    """A line whose message can never fit its agent's window is invalid, with the numbers."""
    from types import SimpleNamespace

    from memq.defaults import DEFAULT_HUMAN, DEFAULT_PERSONA
    from memq.limits import message_room
    from storage import repository as repo

    rooms: dict[str, Any] = {}
    for item in items:
        if item.errors:
            continue
        if item.agent is not None:  # created by this batch: its window is not known yet
            spec = item.agent
            key = "new:" + spec["name"]
            agent = SimpleNamespace(name=spec["name"], model=spec.get("model"), system_prompt=None, context_window=0)
            values = [spec.get("persona") or DEFAULT_PERSONA, spec.get("human") or DEFAULT_HUMAN]
        else:
            key = item.agent_id
            agent = repo.get_agent(session, key) if key not in rooms else None
            values = [b.value for b in repo.load_blocks(session, key)] if agent is not None else []
        if key not in rooms:
            rooms[key] = message_room(settings, agent, values)
        try:
            rooms[key].check(item.message)
        except repo.MessageTooLong as exc:
            item.errors.append(str(exc))
