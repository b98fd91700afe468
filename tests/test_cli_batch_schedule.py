"""`memq batch ...` and `memq schedule ...` as the real console script, embedded mode."""

from __future__ import annotations

import json

from test_cli import assert_one_line_error, embedded_env, run_memq  # noqa: F401 (fixtures below)

import pytest


@pytest.fixture(scope="module")
def env(tmp_path_factory, llm):
    return embedded_env(tmp_path_factory.mktemp("memq-home-bs"), llm)


@pytest.fixture(scope="module")
def agent_id(env):
    return run_memq(env, "agent", "create", "--name", "bs", "--json").doc["id"]


def test_batch_submit_wait_results_in_line_order(env, agent_id, tmp_path):
    # given a JSONL file with one bad line
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join([
        json.dumps({"id": "one", "agent_id": agent_id, "message": "first"}),
        json.dumps({"agent_id": agent_id, "message": ""}),
        json.dumps({"id": "three", "agent_id": agent_id, "message": "third"}),
    ]) + "\n")
    # when submitted without --skip-invalid: one line of error naming the line, exit 1
    assert_one_line_error(run_memq(env, "batch", "submit", str(path), "--json"), "line 2")
    # when submitted with --skip-invalid --wait
    res = run_memq(env, "batch", "submit", str(path), "--skip-invalid", "--wait", "--json")
    assert res.code == 0, res.err
    doc = res.doc
    assert doc["enqueued"] == 2 and doc["invalid"] == 1 and doc["status"]["finished"]
    # then results are JSONL, one row per line, in order
    out = run_memq(env, "batch", "results", doc["batch_id"])
    rows = [json.loads(line) for line in out.out.splitlines()]
    assert [(r["line"], r["id"], r["status"]) for r in rows] == [(1, "one", "done"), (2, None, "invalid"), (3, "three", "done")]
    assert rows[0]["replies"] == ["echo: first"] and rows[2]["replies"] == ["echo: third"]
    status = run_memq(env, "batch", "status", doc["batch_id"], "--json").doc
    assert status["counts"] == {"done": 2} and status["invalid"] == 1


def test_batch_errors(env, tmp_path):
    assert_one_line_error(run_memq(env, "batch", "submit", str(tmp_path / "missing.jsonl")), "no such file")
    assert_one_line_error(run_memq(env, "batch", "status", "nope", "--json"), "unknown batch")


def test_schedule_add_list_pause_resume_delete(env, agent_id):
    added = run_memq(env, "schedule", "add", agent_id, "--every", "1h", "--message", "check in", "--json")
    assert added.code == 0, added.err
    sid = added.doc["id"]
    assert added.doc["kind"] == "every" and added.doc["next_fire_at"]
    listed = run_memq(env, "schedule", "list", agent_id, "--json").doc["schedules"]
    assert [s["id"] for s in listed] == [sid]
    assert run_memq(env, "schedule", "pause", sid, "--json").doc["paused"] is True
    assert run_memq(env, "schedule", "resume", sid, "--json").doc["paused"] is False
    assert run_memq(env, "schedule", "delete", sid, "--json").doc == {"deleted": sid}
    assert run_memq(env, "schedule", "list", "--json").doc["schedules"] == []


@pytest.mark.parametrize("args, fragment", [
    (["--cron", "99 * * * *"], "invalid cron"),
    (["--cron", "0 8 * * *", "--tz", "Nowhere/Land"], "unknown time zone"),
    (["--every", "fortnight"], "invalid duration"),
    (["--at", "2000-01-01T00:00"], "in the past"),
])
def test_schedule_bad_input_is_one_line_exit_1(env, agent_id, args, fragment):
    assert_one_line_error(run_memq(env, "schedule", "add", agent_id, *args, "--message", "x"), fragment)
