"""The `memq` command line, run as the real console script in embedded mode.

Every test runs `memq ...` as a subprocess with MEMQ_HOME in a temporary
directory, no broker and no database URL (SQLite, steps on the CLI's own
threads), against the scripted OpenAI-compatible server of tests/scripted_llm.py.
No Postgres, Redis or worker process is involved.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from scripted_llm import ScriptedLLM  # noqa: E402

API_KEY = "test-key-never-printed"
_VENV_SCRIPT = Path(sys.executable).with_name("memq")  # the console script pip installed
MEMQ = str(_VENV_SCRIPT) if _VENV_SCRIPT.exists() else (shutil.which("memq") or "memq")


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def doc(self):
        """The one JSON document on stdout."""
        return json.loads(self.out)


def embedded_env(home: Path, llm: ScriptedLLM | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMQ_")}
    env["MEMQ_HOME"] = str(home)
    if llm is not None:
        env.update(MEMQ_LLM_MODEL="openai/scripted", MEMQ_LLM_API_BASE=llm.url,
                   MEMQ_LLM_API_KEY=API_KEY)
    env.update(extra)
    return env


def run_memq(env: dict[str, str], *args: str, stdin: str | None = None,
             timeout: float = 60, cwd: str | Path | None = None) -> Result:
    proc = subprocess.run([MEMQ, *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)
    result = Result(proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in result.err, result.err
    assert API_KEY not in result.out + result.err, "a secret was printed"
    return result


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.code == 1, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("memq-home")


@pytest.fixture(scope="module")
def env(home: Path, llm: ScriptedLLM) -> dict[str, str]:
    """Embedded settings: MEMQ_HOME only, plus the scripted model."""
    return embedded_env(home, llm)


@pytest.fixture
def memq(env):
    return lambda *args, **kw: run_memq(env, *args, **kw)


@pytest.fixture(scope="module")
def store(home: Path, env):
    """The same embedded database, opened in the test process to set up agents quickly
    (`memq agent create` itself is covered by test_agent_create_list_show_delete)."""
    from memq.client import Client
    from memq.settings import Settings

    run_memq(env, "db", "upgrade")
    client = Client.connect(Settings(home=home, database_url=None, broker_url=None))
    yield client
    client.close()


@pytest.fixture
def agent_id(store) -> str:
    return store.create_agent("tester").id


@pytest.fixture(scope="module")
def ada(env, store, llm: ScriptedLLM) -> tuple[str, Result]:
    """An agent that had one turn: it noted the user's name (heartbeat), then replied."""
    agent = store.create_agent("ada-bot").id
    llm.script(
        agent,
        {"content": "The user told me their name; I should remember it.",
         "tool": "core_memory_append",
         "args": {"label": "human", "content": "Name: Ada.", "request_heartbeat": True}},
        {"tool": "send_message",
         "args": {"message": "Nice to meet you, Ada.", "request_heartbeat": False}},
    )
    sent = run_memq(env, "send", agent, "Hi, I am Ada.", "--wait", "--json")
    return agent, sent


# -- help and start-up --------------------------------------------------------

def test_help_lists_the_commands(memq):
    # when
    result = memq("--help")
    # then
    assert result.code == 0
    for command in ("agent", "send", "chat", "messages", "memory", "db", "worker", "demo"):
        assert command in result.out


def test_the_cli_module_imports_nothing_heavy(env):
    # given the console script's module, imported alone
    probe = ("import sys, memq.cli.main; "
             "print([m for m in ('litellm', 'celery', 'sqlalchemy', 'storage.models') "
             "if m in sys.modules])")
    # when
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                         text=True, check=True).stdout
    # then
    assert out.strip() == "[]"


# -- database -------------------------------------------------------------------

def test_db_upgrade_applies_migrations(tmp_path, llm):
    # given a home with no database yet
    env = embedded_env(tmp_path, llm)
    # when
    result = run_memq(env, "db", "upgrade", "--json")
    # then
    assert result.code == 0
    assert result.doc == {"ok": True, "database": f"sqlite:///{(tmp_path / 'memq.db').resolve()}", "created": False}
    assert (tmp_path / "memq.db").exists()


def test_db_errors_never_show_the_password(tmp_path):
    # given a Postgres URL with a password and nothing listening
    env = embedded_env(tmp_path, None,
                       MEMQ_DATABASE_URL="postgresql://memq:hunter2secret@127.0.0.1:1/memq")
    # when
    result = run_memq(env, "db", "upgrade", "--json")
    # then
    assert_one_line_error(result)
    assert "hunter2secret" not in result.err + result.out and result.doc["error"]["type"] == "unavailable"


# -- agents ---------------------------------------------------------------------

def test_agent_create_list_show_delete(memq):
    # when an agent is created
    created = memq("agent", "create", "--name", "ada", "--persona", "A calm helper.",
                   "--human", "Unknown person.", "--model", "openai/other", "--json")
    # then it has an id and the other AgentView fields
    assert created.code == 0
    agent = created.doc
    assert agent["name"] == "ada" and agent["model"] == "openai/other"
    assert {"id", "created_at", "queue", "messages", "busy", "active_run_id"} <= set(agent)

    # when listed and shown
    listed = memq("agent", "list", "--json").doc["agents"]
    shown = memq("agent", "show", agent["id"], "--json").doc
    # then
    assert agent["id"] in [a["id"] for a in listed]
    assert shown["id"] == agent["id"]
    assert {b["label"]: b["value"] for b in shown["memory"]} == {
        "persona": "A calm helper.", "human": "Unknown person."}

    # when deleted
    deleted = memq("agent", "delete", agent["id"], "--json")
    # then it is gone
    assert deleted.code == 0 and deleted.doc == {"deleted": agent["id"]}
    assert_one_line_error(memq("agent", "show", agent["id"], "--json"), "unknown agent")


# -- send, messages, memory ---------------------------------------------------------

def test_send_wait_runs_the_turn_in_process(ada):
    # given an agent scripted to note the name, then reply; when sent with --wait
    _, sent = ada
    # then the run is done, with both steps and the reply
    assert sent.code == 0, sent.err
    run = sent.doc
    assert run["status"] == "done"
    assert run["replies"] == ["Nice to meet you, Ada."]
    assert run["steps"] == 2
    assert run["run_id"] and run["error"] is None


def test_send_without_wait_only_queues(memq, store, agent_id):
    # when sent without --wait (embedded: no step starts in this process)
    result = memq("send", agent_id, "no hurry", "--json", "--idempotency-key", "k1")
    # then the document is the queued run, the exit code 0, and nothing ran yet
    assert result.code == 0, result.err
    assert result.doc["status"] == "queued" and result.doc["replies"] == []
    assert store.messages(agent_id) == []
    # and the same key again gives the same run
    again = memq("send", agent_id, "no hurry", "--json", "--idempotency-key", "k1")
    assert again.doc["run_id"] == result.doc["run_id"]


def test_messages_json_is_the_raw_record(memq, ada):
    # given the agent's finished turn
    agent, sent = ada
    # when
    msgs = memq("messages", agent, "--json").doc["messages"]
    # then: event, monologue + tool call, tool result, heartbeat, reply, tool result
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "user", "assistant", "tool"]
    assert json.loads(msgs[0]["content"])["type"] == "user_message"
    assert json.loads(msgs[0]["content"])["message"] == "Hi, I am Ada."
    assert json.loads(msgs[3]["content"])["type"] == "heartbeat"
    first_call = msgs[1]["tool_calls"][0]
    assert msgs[1]["content"] == "The user told me their name; I should remember it."
    assert first_call["type"] == "function" and first_call["function"]["name"] == "core_memory_append"
    assert json.loads(first_call["function"]["arguments"])["content"] == "Name: Ada."
    assert msgs[2]["tool_call_id"] == first_call["id"]
    assert json.loads(msgs[2]["content"])["status"] == "OK"
    assert msgs[4]["tool_calls"][0]["function"]["name"] == "send_message"
    for m in msgs:
        assert {"id", "role", "content", "tool_calls", "created_at"} <= set(m)
        assert m["created_at"].endswith("Z") and m["created_at"][10] == "T"
    # and --limit keeps the last ones, oldest first
    last = memq("messages", agent, "--limit", "2", "--json").doc["messages"]
    assert [m["id"] for m in last] == [msgs[4]["id"], msgs[5]["id"]]


def test_messages_human_transcript(memq, ada):
    # when
    result = memq("messages", ada[0])
    # then
    assert result.code == 0
    assert "user: Hi, I am Ada." in result.out
    assert "core_memory_append(" in result.out and "Nice to meet you, Ada." in result.out


def test_memory_show_has_what_the_agent_stored(memq, ada):
    # when
    result = memq("memory", "show", ada[0], "--json")
    # then
    assert result.code == 0
    blocks = {b["label"]: b for b in result.doc["blocks"]}
    assert "Name: Ada." in blocks["human"]["value"]
    assert set(blocks["human"]) == {"label", "value", "limit"} and blocks["human"]["limit"] > 0


# -- bad input ------------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    ["send", "no-such-agent", "hello"],
    ["messages", "no-such-agent"],
    ["memory", "show", "no-such-agent"],
])
def test_unknown_agent_is_a_one_line_error(memq, command):
    # when
    result = memq(*command, "--json")
    # then
    assert_one_line_error(result, "unknown agent")
    assert result.doc == {"error": {"type": "not_found", "message": result.err.strip()[len("error: "):]}}


def test_empty_message_is_rejected(memq, agent_id):
    # when
    result = memq("send", agent_id, "   ", "--json")
    # then
    assert_one_line_error(result, "empty")
    assert result.doc["error"]["type"] == "bad_input"


def test_oversized_message_is_rejected(env, agent_id):
    # given a 50-character limit
    small = {**env, "MEMQ_MAX_MESSAGE_CHARS": "50"}
    # when
    result = run_memq(small, "send", agent_id, "x" * 51, "--wait", "--json")
    # then
    assert_one_line_error(result, "51", "50")


@pytest.mark.parametrize("args", [
    ["messages", "some-id", "--limit", "0"],
    ["send", "some-id", "hi", "--timeout", "-1"],
    ["worker", "--pool", "bogus"],
    ["worker", "--queues", "interactive,nope"],
])
def test_bad_option_values_exit_1(memq, args):
    # when / then
    assert_one_line_error(memq(*args))


def test_usage_errors_stay_exit_2(memq):
    # when
    result = memq("messages", "some-id", "--limit", "many")
    # then
    assert result.code == 2


# -- runs that do not end well ----------------------------------------------------------

def test_wait_timeout_exits_3_with_current_status(memq, agent_id, llm):
    # given an LLM that takes 4 s to answer
    llm.script(agent_id, {"sleep_s": 4})
    # when waiting only 1 s
    result = memq("send", agent_id, "are you there?", "--wait", "--timeout", "1", "--json")
    # then
    assert result.code == 3, result.err
    assert result.doc["status"] in ("queued", "running")


def test_failed_run_exits_1_with_its_error(env, agent_id, llm):
    # given an LLM that fails every attempt (1 try + 2 retries)
    llm.script(agent_id, {"status": 500}, {"status": 500}, {"status": 500})
    flaky = {**env, "MEMQ_LLM_MAX_RETRIES": "2", "MEMQ_LLM_BACKOFF_S": "0.01"}
    # when
    result = run_memq(flaky, "send", agent_id, "hello?", "--wait", "--json")
    # then
    assert result.code == 1
    assert result.doc["status"] == "failed"
    assert "500" in result.doc["error"]
    assert result.err.startswith("error: ") and len(result.err.strip().splitlines()) == 1


# -- chat and demo -------------------------------------------------------------------------

def test_chat_works_in_process_and_picks_up_queued_work(memq, store, agent_id):
    # given a message queued earlier without --wait
    memq("send", agent_id, "queued before", "--json")
    # when two lines are typed, then /quit
    result = memq("chat", agent_id, "--json", stdin="first line\nsecond line\n/quit\nignored\n")
    # then each line got its reply, in process
    assert result.code == 0, result.err
    turns = result.doc["turns"]
    assert [t["replies"] for t in turns] == [["echo: first line"], ["echo: second line"]]
    assert all(t["status"] == "done" for t in turns)
    # and the queued message was answered first
    sent = [json.loads(m.content)["message"] for m in store.messages(agent_id) if m.role == "user"]
    assert sent == ["queued before", "first line", "second line"]


def test_demo_without_a_model_explains_how_to_set_one(tmp_path):
    # given no model configured
    env = embedded_env(tmp_path, None)
    # when
    result = run_memq(env, "demo")
    # then
    assert result.code == 1
    assert "MEMQ_LLM_MODEL" in result.err and "ollama" in result.err.lower()
    assert (tmp_path / "memq.db").exists()


def test_demo_json_shows_the_real_replies(tmp_path, llm):
    # given the scripted model, which echoes every message
    env = embedded_env(tmp_path, llm)
    # when
    result = run_memq(env, "demo", "--json")
    # then
    assert result.code == 0, result.err
    doc = result.doc
    assert doc["agent_id"] and len(doc["turns"]) >= 2
    for turn in doc["turns"]:
        assert turn["status"] == "done" and turn["run_id"] and turn["steps"] >= 1
        assert turn["replies"] == ["echo: " + turn["message"]]
    assert {b["label"] for b in doc["memory"]} >= {"persona", "human"}
