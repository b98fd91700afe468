"""Schedule operations of the Python client (mixed into Client)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from memq.views import ScheduleView


class ScheduleOps:
    """`memq schedule add|list|pause|resume|delete` as methods; needs self.rt."""

    rt: Any

    def add_schedule(
        self,
        agent_id: str,
        message: str,
        *,
        cron: str | None = None,
        every: str | None = None,
        at: str | None = None,
        tz: str = "UTC",
        missed: str | None = None,
        llm_mode: str = "normal",
    ) -> ScheduleView:
        """Wake the agent with `message` on a cron expression, an interval or once at a time.

        llm_mode="provider_batch": each fire's steps go through the provider's batch API."""
        from memq.provider_batch_client import checked_mode

        from scheduler.timing import MissedPolicy, ScheduleError, first_fire, make_spec
        from storage.repository import schedules as repo
        from storage.repository.errors import BadInput

        if not message.strip():
            raise BadInput("schedule message must not be empty")
        if len(message) > self.rt.settings.max_message_chars:
            raise BadInput(f"schedule message has {len(message)} characters; the limit is {self.rt.settings.max_message_chars}")
        _check_fits(self.rt, agent_id, message)
        mode = checked_mode(self.rt.settings, llm_mode)
        policy = missed or self.rt.settings.schedule_missed
        try:
            MissedPolicy(policy)
        except ValueError:
            raise ScheduleError(f"unknown missed-fire policy '{policy}': use coalesce, skip or all") from None
        now = datetime.now(timezone.utc)
        spec = make_spec(cron=cron, every=every, at=at, tz=tz, now=now)
        with self.rt.db.transaction() as s:
            schedule = repo.create_schedule(
                s,
                agent_id=agent_id,
                kind=spec.kind.value,
                expr=spec.expr,
                tz=spec.tz,
                message=message,
                missed=policy,
                next_fire_at=first_fire(spec, now),
                llm_mode=mode.value,
            )
            return ScheduleView.of(schedule, None)

    def list_schedules(self, agent_id: str | None = None) -> list[ScheduleView]:
        from storage.repository import schedules as repo

        with self.rt.db.transaction() as s:
            return [ScheduleView.of(sch, status) for sch, status in repo.list_schedules(s, agent_id)]

    def _set_paused(self, schedule_id: str, paused: bool) -> ScheduleView:
        from scheduler.timing import ScheduleKind, Spec, first_fire
        from storage.repository import schedules as repo

        with self.rt.db.transaction() as s:
            schedule = repo.get_schedule(s, schedule_id)
            if schedule.paused and not paused and schedule.kind != ScheduleKind.AT:
                # Resuming starts from now: the paused stretch is not caught up.
                spec = Spec(ScheduleKind(schedule.kind), schedule.expr, schedule.tz)
                schedule.next_fire_at = first_fire(spec, datetime.now(timezone.utc))
            schedule.paused = paused
            s.flush()
            return next(ScheduleView.of(x, st) for x, st in repo.list_schedules(s, schedule.agent_id) if x.id == schedule_id)

    def pause_schedule(self, schedule_id: str) -> ScheduleView:
        return self._set_paused(schedule_id, True)

    def resume_schedule(self, schedule_id: str) -> ScheduleView:
        return self._set_paused(schedule_id, False)

    def delete_schedule(self, schedule_id: str) -> None:
        from storage.repository import schedules as repo

        with self.rt.db.transaction() as s:
            repo.delete_schedule(s, schedule_id)


def _check_fits(rt: Any, agent_id: str, message: str) -> None:
    """A wake-up whose message can never fit the agent's window is refused now, not at each fire."""
    from memq.limits import check_message_fits
    from storage import repository as repo

    with rt.db.transaction() as s:
        check_message_fits(rt.settings, s, repo.get_agent(s, agent_id), message)
