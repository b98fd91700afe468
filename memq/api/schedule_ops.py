"""Letta's scheduled messages on memq's schedules: a one-time message is an `at`
schedule, a recurring one a `cron` schedule (UTC). Each call first finds the agent
within the caller's tenant; a schedule of another agent is unknown here."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from memq.api import ids
from memq.views import ScheduleView
from storage import repository as repo
from storage.repository import schedules as srepo
from storage.repository.errors import BadInput, NotFound

# Letta's scheduled_at is epoch milliseconds; a value below this is taken as seconds.
MS_FROM = 100_000_000_000  # 1e11 ms = 1973; 1e11 s = year 5138


def instant(scheduled_at: float) -> datetime:
    seconds = scheduled_at / 1000.0 if scheduled_at >= MS_FROM else scheduled_at
    try:
        return datetime.fromtimestamp(seconds, timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise BadInput(f"schedule.scheduled_at: {scheduled_at} is not a time (epoch milliseconds)") from None


class ScheduleApi:
    def __init__(self, ops: Any) -> None:
        self.db = ops.db
        self.client = ops.client

    def _agent(self, tenant: str, agent_id: str) -> None:
        with self.db.transaction() as s:
            repo.get_agent(s, agent_id, tenant_id=tenant)

    def create(self, tenant: str, agent_id: str, text: str, *, at: datetime | None, cron: str | None) -> ScheduleView:
        self._agent(tenant, agent_id)
        return self.client.add_schedule(agent_id, text, cron=cron, at=at.isoformat() if at else None, tz="UTC")

    def list(self, tenant: str, agent_id: str, after: str | None, limit: int) -> tuple[list[ScheduleView], bool]:
        with self.db.transaction() as s:
            repo.get_agent(s, agent_id, tenant_id=tenant)
            views = [ScheduleView.of(x, st) for x, st in srepo.list_schedules(s, agent_id)]
        if after is not None:
            shown = [v.id for v in views]
            bare = ids.schedule_id(after)
            views = views[shown.index(bare) + 1:] if bare in shown else []
        return views[:limit], len(views) > limit

    def get(self, tenant: str, agent_id: str, schedule_id: str) -> ScheduleView:
        with self.db.transaction() as s:
            repo.get_agent(s, agent_id, tenant_id=tenant)
            for x, st in srepo.list_schedules(s, agent_id):
                if x.id == schedule_id:
                    return ScheduleView.of(x, st)
        raise NotFound(f"unknown scheduled message: {ids.wire_schedule(schedule_id)}")

    def delete(self, tenant: str, agent_id: str, schedule_id: str) -> None:
        self.get(tenant, agent_id, schedule_id)
        with self.db.transaction() as s:
            srepo.delete_schedule(s, schedule_id)


def wire(v: ScheduleView) -> dict[str, Any]:
    """A memq schedule as Letta's ScheduledMessage."""
    if v.kind == "at":
        at = datetime.fromisoformat(v.expr)
        schedule: dict[str, Any] = {"type": "one-time", "scheduled_at": int(at.timestamp() * 1000)}
    elif v.kind == "cron":
        schedule = {"type": "recurring", "cron_expression": v.expr}
    else:  # memq's `every` (made with the CLI): no cron form; shown as memq writes it
        schedule = {"type": "recurring", "cron_expression": f"@every {v.expr}s"}
    return {
        "id": ids.wire_schedule(v.id), "agent_id": ids.wire_agent(v.agent_id),
        "message": {"messages": [{"role": "user", "content": v.message, "type": "message"}]},
        "next_scheduled_time": v.next_fire_at, "schedule": schedule,
        "metadata": {"fires": v.fires, "last_run_id": ids.wire_run(v.last_run_id) if v.last_run_id else None,
                     "last_run_status": v.last_run_status, "paused": v.paused},
    }
