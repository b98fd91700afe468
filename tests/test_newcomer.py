"""The newcomer's first hour, as the real `memq` console script in embedded mode.

`memq demo` with nothing but OPENAI_API_KEY and OPENAI_BASE_URL (the scripted
server) and PATH: it finds the model, talks to it, keeps one demo agent across
runs, and every command it prints works as printed. `memq chat` shows each step
as it commits. Ctrl-C during a wait leaves at once with the run id (exit 130), and
the run goes on.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripted_llm import ScriptedLLM

_SCRIPT = Path(sys.executable).with_name("memq")
MEMQ = str(_SCRIPT)
KEY = "sk-newcomer-never-printed"


def only(llm: ScriptedLLM, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a newcomer: PATH (without the venv), an OpenAI key and base URL."""
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if Path(p).resolve() != _SCRIPT.parent.resolve())
    return {"PATH": path, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": llm.url, "MEMQ_HOME": str(home),
            "COLUMNS": "200", **extra}


def run(args: list[str], env: dict[str, str], stdin: str | None = None, timeout: float = 120):
    proc = subprocess.run(args, env=env, input=stdin, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert KEY not in proc.stdout + proc.stderr, "the API key was printed"
    return proc


def printed_commands(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "carry on with:" in line)
    return [line.strip() for line in lines[start + 1:] if line.startswith("  ")]


def test_demo_with_only_an_openai_key_and_base_url_and_its_commands_work_as_printed(llm, tmp_path):
    # given nothing but OPENAI_API_KEY and OPENAI_BASE_URL (memq is not on PATH)
    env = only(llm, tmp_path / "home")
    # when the demo runs
    demo = run([MEMQ, "demo"], env)
    # then it said which model it found and how to change it, and talked to it
    assert demo.returncode == 0, demo.stderr
    assert f"using openai/scripted (found OPENAI_API_KEY and OPENAI_BASE_URL={llm.url})" in demo.stderr
    assert "MEMQ_LLM_MODEL" in demo.stderr
    assert "agent: echo: Hi! I'm Ada." in demo.stdout
    # and every command it printed works as printed, with the full agent id
    commands = printed_commands(demo.stdout)
    agent_id = commands[0].split()[-1]
    assert len(agent_id) == 36 and [c.split()[0] for c in commands] == [MEMQ] * 4
    for command in commands:
        proc = run(shlex.split(command), env, stdin="are you there?\n/quit\n")
        assert proc.returncode == 0, (command, proc.stderr)
        if " chat " in command:
            assert "agent: echo: are you there?" in proc.stdout
        elif " messages " in command:
            assert "are you there?" in proc.stdout
        elif " memory show " in command:
            assert "Juniper" in proc.stdout
        else:  # demo --fresh: a new demo agent, the old one gone
            assert "kept from an earlier run" not in proc.stdout
            assert agent_id not in proc.stdout


def test_the_demo_keeps_one_agent_across_runs(llm, tmp_path):
    env = only(llm, tmp_path / "home")
    first = json.loads(run([MEMQ, "demo", "--json"], env).stdout)
    again = json.loads(run([MEMQ, "demo", "--json"], env).stdout)
    assert (first["reused"], again["reused"]) == (False, True)
    assert again["agent_id"] == first["agent_id"] and again["model"] == "openai/scripted"
    fresh = json.loads(run([MEMQ, "demo", "--json", "--fresh"], env).stdout)
    assert fresh["reused"] is False and fresh["agent_id"] != first["agent_id"]
    listed = json.loads(run([MEMQ, "agent", "list", "--json"], env).stdout)
    names = [a["name"] for a in (listed["agents"] if isinstance(listed, dict) else listed)]
    assert names.count("memq-demo") == 1


def test_run_says_how_it_was_called(llm, tmp_path):
    # given ./run's way of telling memq how it was called
    env = only(llm, tmp_path / "home", MEMQ_LAUNCHER="./run memq")
    # then the printed commands start with it
    demo = run([MEMQ, "demo"], env)
    assert demo.returncode == 0, demo.stderr
    assert all(c.startswith("./run memq ") for c in printed_commands(demo.stdout))


def test_chat_shows_each_step_as_it_commits(llm, tmp_path):
    # given an agent that thinks, saves a note (heartbeat), then replies
    env = only(llm, tmp_path / "home")
    agent_id = json.loads(run([MEMQ, "agent", "create", "--name", "stepper", "--json"], env).stdout)["id"]
    llm.script(agent_id,
               {"content": "A name to remember.", "tool": "core_memory_append",
                "args": {"label": "human", "content": "Name: Ada.", "request_heartbeat": True}},
               {"tool": "send_message", "args": {"message": "Hello Ada!", "request_heartbeat": False}})
    # when the user chats
    proc = run([MEMQ, "chat", agent_id], env, stdin="I am Ada\n/quit\n")
    # then the thought, the tool call with its result on one line, the heartbeat and the reply show
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr
    assert "(thinking) A name to remember." in out
    assert any("→ core_memory_append(" in line and "↳ OK" in line for line in out.splitlines())
    assert "[heartbeat]" in out
    assert "agent: Hello Ada!" in out
    assert out.index("(thinking)") < out.index("[heartbeat]") < out.index("agent: Hello Ada!")
    assert "user: I am Ada" not in out  # the user's own line is not echoed back


@pytest.mark.parametrize("command", ["send", "chat"])
def test_ctrl_c_while_waiting_leaves_at_once_and_the_run_goes_on(llm, tmp_path, command):
    # given an embedded agent whose model takes 6 s to answer (short leases)
    env = only(llm, tmp_path / "home", MEMQ_LEASE_S="2", MEMQ_LLM_TIMEOUT_S="30")
    agent_id = json.loads(run([MEMQ, "agent", "create", "--name", "slow", "--json"], env).stdout)["id"]
    llm.script(agent_id, {"sleep_s": 6, "tool": "send_message",
                          "args": {"message": "too late", "request_heartbeat": False}})
    args = [MEMQ, "send", agent_id, "hello?", "--wait"] if command == "send" else [MEMQ, "chat", agent_id]
    # (SIGINT back to its default: a test run started in the background has it ignored, and so
    # would the command, as Python leaves an ignored SIGINT ignored)
    proc = subprocess.Popen(args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    if command == "chat":
        proc.stdin.write("hello?\n")
        proc.stdin.flush()
    _wait_for_llm_request(llm, agent_id)
    # when Ctrl-C arrives while the model thinks
    interrupted_at = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)  # what the shell waits for before it prompts again
    exited_after_s = time.monotonic() - interrupted_at
    out, err = proc.communicate(timeout=30)
    # then the command returned at once, exit 130, naming the run and how to follow it
    assert exited_after_s < 2.0, (exited_after_s, err)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("interrupted; run ") and f"messages {agent_id}" in line
    run_id = line.split()[2]
    # and the run goes on: the next command to the agent finishes it, then answers its own message
    nxt = run([MEMQ, "send", agent_id, "after", "--wait", "--json", "--timeout", "60"], env)
    assert json.loads(nxt.stdout)["replies"] == ["echo: after"], nxt.stderr
    record = run([MEMQ, "messages", agent_id, "--json"], env).stdout
    replies = [json.loads(c["function"]["arguments"])["message"] for m in json.loads(record)["messages"]
               for c in m["tool_calls"] or []]
    assert replies == ["echo: hello?", "echo: after"], (replies, run_id)


def _wait_for_llm_request(llm: ScriptedLLM, key: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not llm.requests(key):
        assert time.monotonic() < deadline, "the step never called the model"
        time.sleep(0.05)
