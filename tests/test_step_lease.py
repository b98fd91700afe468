"""run_step called in this process against the real Postgres: what the lease does
when loading the turn fails. No doorbell is rung (the event is stored directly),
so the test worker leaves the agent alone until its reconciler's idle time."""

from __future__ import annotations

import time

import pytest

import workers.step as step_module
from helpers import call
from storage import repository as repo


class LoadFailed(RuntimeError):
    pass


def test_a_failed_load_gives_the_lease_back_at_once_and_the_next_step_runs(client, agent, llm, monkeypatch):
    # given an event waiting for the agent, stored without a doorbell
    rt = client.rt
    llm.script(agent.id, call("send_message", message="hello"))
    with rt.db.transaction() as s:
        run, _ = repo.enqueue_message(s, agent.id, "hi", max_chars=rt.settings.max_message_chars)

    # when loading the turn fails after the lease was taken
    def broken_load(*_args, **_kwargs):
        raise LoadFailed("the database went away mid-load")

    monkeypatch.setattr(step_module, "_load_turn", broken_load)
    with pytest.raises(LoadFailed):
        step_module.run_step(rt, agent.id)

    # then the lease is free again (not left to expire), counted as a failed attempt
    with rt.db.transaction() as s:
        row = repo.agent_row(s, agent.id)
    assert row.lease_owner is None
    assert row.lease_until_s < time.time()
    assert row.step_attempts == 1
    assert agent.id not in rt.leases._held  # no renewals for a lease given back

    # and the next doorbell takes the lease and runs the step
    monkeypatch.undo()
    result = step_module.run_step(rt, agent.id)
    assert (result.ran, result.reason, result.run_id) == (True, "committed", run.id)
    assert result.takeover  # its second attempt at this event
    assert client.get_run(run.id).replies == ["hello"]
