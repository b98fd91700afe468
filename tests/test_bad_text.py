"""Text that cannot be stored (invalid UTF-8, lone surrogates, NUL) on every way in:
replaced by U+FFFD with a warning, and the agent always answers its next message.

Through the real worker, Postgres, Redis and the scripted LLM (tests/conftest.py).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from helpers import call, tick_until_fired, tool_results, user_events

WAIT_S = 30
FFFD = "\ufffd"


def _answers_next(client, agent_id: str) -> None:
    """Then: the agent answers its next message (well within the reconciler interval)."""
    started = time.monotonic()
    run = client.send(agent_id, "are you still there?", wait=True, timeout_s=WAIT_S)
    assert run.status == "done" and run.replies == ["echo: are you still there?"], run
    assert time.monotonic() - started < 5


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "memq.text" and r.levelno == logging.WARNING]


def test_invalid_utf8_in_a_cli_argument_is_replaced_and_the_caller_warned(client, agent, memq_env):
    # given a shell argument with a Latin-1 byte (argv reaches Python via surrogateescape)
    cmd = [sys.executable, "-m", "memq.cli.main", "send", agent.id.encode(), b"caf\xe9", "--wait", "--json"]
    # when it is sent through the real CLI
    proc = subprocess.run(cmd, env=memq_env, capture_output=True, timeout=60)
    # then it was accepted with U+FFFD in place of the byte, and stderr says so in one line
    assert proc.returncode == 0, proc.stderr
    assert (b"warning: replaced 1 invalid character (invalid UTF-8 byte 0xe9 at position 3) with U+FFFD"
            in proc.stderr)
    doc = json.loads(proc.stdout)
    assert doc["status"] == "done" and doc["replies"] == [f"echo: caf{FFFD}"]
    assert user_events(client, agent.id)[0]["message"] == f"caf{FFFD}"
    _answers_next(client, agent.id)


def test_invalid_utf8_on_chat_stdin_is_replaced_and_the_chat_goes_on(client, agent, memq_env):
    # given a chat whose piped input carries a Latin-1 byte, then a clean line
    cmd = [sys.executable, "-m", "memq.cli.main", "chat", agent.id, "--json"]
    # when both lines are sent through the real CLI
    proc = subprocess.run(cmd, env=memq_env, input=b"caf\xe9\nthanks\n", capture_output=True, timeout=90)
    # then the byte became U+FFFD with a one-line warning, and both turns were answered
    assert proc.returncode == 0, proc.stderr
    assert b"warning: replaced 1 invalid character (invalid UTF-8 byte 0xe9 at position 3)" in proc.stderr
    turns = json.loads(proc.stdout)["turns"]
    assert [t["replies"] for t in turns] == [[f"echo: caf{FFFD}"], ["echo: thanks"]]


def test_a_lone_surrogate_through_the_python_client(client, agent, caplog):
    caplog.set_level(logging.WARNING, logger="memq.text")
    run = client.send(agent.id, "hi \ud800 there", wait=True, timeout_s=WAIT_S)
    assert run.status == "done" and run.replies == [f"echo: hi {FFFD} there"]
    assert any("lone surrogate U+D800 at position 3" in w for w in _warnings(caplog))
    _answers_next(client, agent.id)


def test_agent_fields_are_cleaned(client, caplog):
    caplog.set_level(logging.WARNING, logger="memq.text")
    a = client.create_agent("nul\x00name", persona="a\udce9b", human="ok", system_prompt="sys\x00tem")
    assert a.name == f"nul{FFFD}name"
    assert next(b.value for b in client.memory(a.id) if b.label == "persona") == f"a{FFFD}b"
    assert any("in persona" in w for w in _warnings(caplog))
    _answers_next(client, a.id)


def test_nul_in_a_batch_line(client, agent):
    # given a JSONL line whose message carries a NUL (a JSON escape, so the line itself is valid)
    line = json.dumps({"agent_id": agent.id, "message": "before\u0000after", "id": "x\u0000"})
    # when the batch is submitted
    doc = client.submit_batch([line])
    deadline = time.monotonic() + WAIT_S
    while not client.batch_status(doc["batch_id"]).finished and time.monotonic() < deadline:
        time.sleep(0.1)
    # then its run was answered with the NUL replaced
    (row,) = client.batch_results(doc["batch_id"])
    assert row["status"] == "done" and row["replies"] == [f"echo: before{FFFD}after"], row
    assert row["message"] == f"before{FFFD}after" and row["id"] == f"x{FFFD}"
    _answers_next(client, agent.id)


def test_nul_in_a_schedule_message(client, agent):
    at = (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat()
    sch = client.add_schedule(agent.id, "wake\x00up", at=at)
    assert sch.message == f"wake{FFFD}up"
    shown = tick_until_fired(client, agent.id, WAIT_S)
    assert shown is not None and shown.last_run_status == "done"
    assert client.get_run(shown.last_run_id).replies == [f"echo: wake{FFFD}up"]
    _answers_next(client, agent.id)


def test_nul_in_an_archival_insert_and_an_ingested_file(client, agent, llm, tmp_path):
    # given a passage and a text file carrying NUL characters and a byte that is not UTF-8
    client.archival_insert(agent.id, "zebra\x00stripes")
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"A stray NUL\x00 and a stray Latin-1 byte \xe9 in a text file about giraffes. "
                      + b"Giraffes eat leaves from tall trees. " * 20)
    doc = client.ingest(agent.id, [notes])
    assert doc["failed"] == 0, doc
    # when the agent searches its archival memory
    llm.script(agent.id, call("archival_memory_search", heartbeat=True, query="zebra"),
               call("archival_memory_search", heartbeat=True, query="stray Latin-1 byte in a text file about giraffes"),
               call("send_message", message="found them"))
    run = client.send(agent.id, "look it up", wait=True, timeout_s=WAIT_S)
    # then both were stored (U+FFFD for the NUL) and found
    assert run.status == "done" and run.replies == ["found them"], run
    found = [r["message"] for r in tool_results(client, agent.id)[:2]]
    assert f"zebra{FFFD}stripes" in found[0]
    assert f"stray NUL{FFFD} and a stray Latin-1 byte {FFFD} in a text file about giraffes" in found[1]
    _answers_next(client, agent.id)


@pytest.mark.parametrize("reply", [
    {"content": "thinking\x00 \ud800", "tool": "send_message", "args": {"message": "hi\x00 \udce9"}},
    {"tool": "core_memory_append", "args": {"label": "human", "content": "likes\x00tea \ud83d",
                                            "request_heartbeat": False}},
    {"tool": "send\x00message", "args": {"message": "x"}},
    {"tool": "send_message", "raw_args": '{"message": "unterminated\x00 \udfff'},
], ids=["content_and_arguments", "memory_edit", "tool_name", "malformed_arguments"])
def test_a_provider_reply_carrying_bad_text(client, agent, llm, reply):
    # given a model whose reply carries NUL and lone surrogates
    fails = "content" not in reply and reply["tool"] != "core_memory_append"
    llm.script(agent.id, reply, *([call("send_message", message="recovered")] if fails else []))
    # when a message arrives
    run = client.send(agent.id, "go", wait=True, timeout_s=WAIT_S)
    # then the step committed with U+FFFD in their place
    assert run.status == "done", run
    stored = json.dumps([m.model_dump() for m in client.messages(agent.id)], ensure_ascii=False)
    assert "\x00" not in stored and "\ud800" not in stored and "\udce9" not in stored
    if "content" in reply:
        assert run.replies == [f"hi{FFFD} {FFFD}"]
        assert client.messages(agent.id)[1].content == f"thinking{FFFD} {FFFD}"
    elif reply["tool"] == "core_memory_append":
        assert f"likes{FFFD}tea {FFFD}" in next(b.value for b in client.memory(agent.id) if b.label == "human")
    else:  # an unknown tool / malformed arguments: a Failed result, then the model recovered
        assert fails
        assert run.replies == ["recovered"]
        assert tool_results(client, agent.id)[0]["status"] == "Failed"
    _answers_next(client, agent.id)


def test_over_long_tool_names_and_call_ids_from_the_provider(client, agent, llm):
    # given a model that answers with a 5 000-character tool name, then a 5 000-character call id
    llm.script(agent.id, {"tool": "x" * 5000, "args": {"message": "x"}},
               {"tool": "send_message", "call_id": "c" * 5000, "args": {"message": "recovered"}})
    # when a message arrives
    run = client.send(agent.id, "go", wait=True, timeout_s=WAIT_S)
    # then both steps committed (the unknown tool failed as a tool, not as a database error)
    assert run.status == "done" and run.replies == ["recovered"], run
    calls = [m for m in client.messages(agent.id) if m.role == "assistant"]
    results = [m for m in client.messages(agent.id) if m.role == "tool"]
    assert json.loads(results[0].content)["status"] == "Failed"
    # and the long call id became a short one, the same in the call and in its result
    call_id = calls[1].tool_calls[0]["id"]
    assert len(call_id) <= 200 and results[1].tool_call_id == call_id
    _answers_next(client, agent.id)
