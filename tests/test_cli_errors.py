"""Every kind of CLI failure names what to fix, in one line, and --json gets an error document.

The real console script, as a subprocess: embedded (SQLite under a temporary
MEMQ_HOME) unless a test points it at Postgres, a dead port or a dead broker.
Given / when / then.
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from stack import PG_SERVER  # noqa: E402
from test_cli import Result, assert_one_line_error, embedded_env, run_memq  # noqa: E402

PG_BASE = PG_SERVER.rsplit("/", 1)[0]


def assert_error_doc(result: Result, kind: str, *fragments: str, code: int = 1) -> None:
    """--json failed: the exit code, one line on stderr, and {"error": {type, message}} on stdout."""
    assert result.code == code, (result.code, result.out, result.err)
    assert result.err.strip().splitlines()[-1].startswith("error: "), result.err
    error = result.doc["error"]
    assert error["type"] == kind, error
    for fragment in fragments:
        assert fragment in error["message"], error


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return embedded_env(tmp_path / "home", None)


@pytest.fixture
def agents(env) -> dict[str, str]:
    """Two agents whose names and ids the tests refer to."""
    return {name: run_memq(env, "agent", "create", "--name", name, "--json").doc["id"] for name in ("ada", "bob")}


# -- databases and brokers ------------------------------------------------------------

def test_unsupported_database_url_is_named_with_its_password_masked(env):
    # given a mysql:// URL
    env = {**env, "MEMQ_DATABASE_URL": "mysql://u:hunter2secret@db.example/app"}
    # when / then: one line naming the URL and what memq needs; no driver or class name
    result = run_memq(env, "agent", "list")
    assert_one_line_error(result, "unsupported database URL mysql://u:***@db.example/app", "postgresql://")
    assert "hunter2secret" not in result.err and "ModuleNotFound" not in result.err
    assert_error_doc(run_memq(env, "agent", "list", "--json"), "bad_input", "unsupported database URL")


def test_db_upgrade_creates_a_missing_postgres_database(env):
    # given a database name that does not exist on the server
    name = f"memq_err_{secrets.token_hex(4)}"
    env = {**env, "MEMQ_DATABASE_URL": f"{PG_BASE}/{name}"}
    try:
        # when a command other than db upgrade runs, it says so
        assert_one_line_error(run_memq(env, "agent", "list"), f"database {name} does not exist on",
                              f"createdb {name}")
        # when db upgrade runs, it creates the database and migrates it
        result = run_memq(env, "db", "upgrade", "--json")
        assert result.code == 0 and result.doc["created"] is True, result.err
        # then the database works
        assert run_memq(env, "agent", "list", "--json").doc == {"agents": []}
    finally:
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_postgres_that_is_down_is_named_by_host_and_port(env):
    # given a URL where nothing listens
    env = {**env, "MEMQ_DATABASE_URL": "postgresql://memq@127.0.0.1:9/memq"}
    # when / then
    assert_one_line_error(run_memq(env, "agent", "list"), "cannot connect to Postgres at 127.0.0.1:9",
                          "connection refused")
    assert_error_doc(run_memq(env, "agent", "show", "ada", "--json"), "unavailable", "127.0.0.1:9")


def test_send_with_the_broker_down_keeps_the_message_and_names_the_broker(pg_url, tmp_path):
    # given Postgres, an agent, and a broker URL where nothing listens
    env = embedded_env(tmp_path, None, MEMQ_DATABASE_URL=pg_url, MEMQ_BROKER_URL="redis://:brokerpw99@127.0.0.1:9/0")
    agent_id = run_memq(env, "agent", "create", "--name", f"b-{secrets.token_hex(3)}", "--json").doc["id"]
    # when a message is sent
    result = run_memq(env, "send", agent_id, "hello", "--json")
    # then it is queued (exit 0) and the warning names the broker, its password masked
    assert result.code == 0 and result.doc["status"] == "queued", result.err
    assert "cannot connect to the broker at redis://:***@127.0.0.1:9/0 (connection refused)" in result.err
    assert "brokerpw99" not in result.err


def test_a_value_over_a_column_limit_is_refused_before_the_database(env):
    # when an agent gets a 201-character name, or a 300-character model
    result = run_memq(env, "agent", "create", "--name", "n" * 201)
    assert_one_line_error(result, "agent name is 201 characters long; the limit is 200")
    assert_error_doc(run_memq(env, "agent", "create", "--name", "ok", "--model", "m" * 300, "--json"),
                     "bad_input", "model is 300 characters long; the limit is 200")
    # then nothing was created
    assert run_memq(env, "agent", "list", "--json").doc == {"agents": []}


def test_a_batch_line_over_a_limit_is_named_by_its_line(env, agents, tmp_path):
    # given a batch whose second line has a 201-character id
    path = tmp_path / "b.jsonl"
    path.write_text(f'{{"agent_id": "{agents["ada"]}", "message": "a"}}\n'
                    f'{{"agent_id": "{agents["ada"]}", "message": "b", "id": "{"i" * 201}"}}\n')
    # when / then
    result = run_memq(env, "batch", "submit", str(path))
    assert result.code == 1 and "line 2" in result.err and "'id' is 201 characters long" in result.err


# -- --json failures, usage ------------------------------------------------------------

@pytest.mark.parametrize("args, kind, fragment", [
    (["agent", "show", "nobody"], "not_found", "unknown agent: nobody"),
    (["messages", "ffffffff"], "not_found", "unknown agent"),
    (["schedule", "pause", "00000000"], "not_found", "unknown schedule"),
    (["batch", "status", "0000"], "not_found", "unknown batch"),
    (["send", "ada", "hi", "--timeout", "0"], "bad_input", "--timeout"),
    (["batch", "submit", "/no/such/file.jsonl"], "bad_input", "no such file"),
])
def test_json_failures_print_an_error_document(env, agents, args, kind, fragment):
    assert_error_doc(run_memq(env, *args, "--json"), kind, fragment)


def test_usage_errors_exit_2_with_an_error_document_under_json(env):
    # when an option has a bad type, or a command does not exist
    bad = run_memq(env, "messages", "ada", "--limit", "many", "--json")
    assert_error_doc(bad, "usage", "--limit", code=2)
    assert_error_doc(run_memq(env, "frobnicate", "--json"), "usage", "frobnicate", code=2)
    # then without --json the usage text stays, and stdout is empty
    human = run_memq(env, "messages", "ada", "--limit", "many")
    assert human.code == 2 and human.out == "" and "--limit" in human.err


def test_no_exception_class_names_for_bad_files(env, agents, tmp_path):
    # given a directory where a file is expected
    result = run_memq(env, "batch", "submit", str(tmp_path))
    assert_one_line_error(result)
    assert "Error:" not in result.err and "Exception" not in result.err


# -- ids -------------------------------------------------------------------------------

def test_agents_are_named_by_name_or_unique_prefix(env, agents):
    # when messages go to an agent by its name and by a prefix of its id
    by_name = run_memq(env, "send", "ada", "hi", "--json")
    by_prefix = run_memq(env, "send", agents["bob"][:6], "hi", "--json")
    # then each reached the right agent
    assert by_name.code == 0 and by_name.doc["agent_id"] == agents["ada"]
    assert by_prefix.code == 0 and by_prefix.doc["agent_id"] == agents["bob"]
    shown = run_memq(env, "agent", "show", agents["ada"][:4], "--json").doc
    assert shown["id"] == agents["ada"]


def test_schedule_output_shows_whole_ids_that_paste_back(env, agents):
    # given a schedule added by agent name
    added = run_memq(env, "schedule", "add", "ada", "--every", "5m", "--message", "tick")
    assert added.code == 0, added.err
    schedule_id = run_memq(env, "schedule", "list", "--json").doc["schedules"][0]["id"]
    # then the human output holds both whole ids
    listed = run_memq(env, "schedule", "list", "ada")
    assert schedule_id in listed.out and agents["ada"] in listed.out and schedule_id in added.out
    # and a prefix of the schedule id is accepted back
    paused = run_memq(env, "schedule", "pause", schedule_id[:8], "--json")
    assert paused.code == 0 and paused.doc["paused"] is True


def test_batch_lines_name_agents_by_name_or_prefix(env, agents, tmp_path):
    # given lines naming agents by name and by prefix
    path = tmp_path / "by-name.jsonl"
    path.write_text(f'{{"agent_id": "ada", "message": "a"}}\n{{"agent_id": "{agents["bob"][:6]}", "message": "b"}}\n')
    # when the batch is submitted
    submitted = run_memq(env, "batch", "submit", str(path), "--json")
    assert submitted.code == 0, submitted.err
    # then its rows carry the whole ids, and the batch is found by a prefix of its id
    rows = run_memq(env, "batch", "results", submitted.doc["batch_id"][:8]).out.splitlines()
    assert [json.loads(r)["agent_id"] for r in rows] == [agents["ada"], agents["bob"]]


def test_agent_list_shows_whole_ids(env, agents):
    listed = run_memq(env, "agent", "list")
    assert agents["ada"] in listed.out and agents["bob"] in listed.out


# -- small ones --------------------------------------------------------------------------

def test_version(env):
    from memq import __version__

    assert run_memq(env, "--version").out.strip() == f"memq {__version__}"
    assert run_memq(env, "version", "--json").doc["version"] == __version__


def test_every_without_a_unit_is_refused(env, agents):
    result = run_memq(env, "schedule", "add", "ada", "--every", "5", "--message", "x")
    assert_one_line_error(result, "--every 5: add a unit, e.g. 5s, 5m, 5h")


def test_search_pages_count_from_one_in_text(env, agents):
    # given one passage
    assert run_memq(env, "archival", "insert", "ada", "The parrot is named Captain.").code == 0
    # when it is searched
    shown = run_memq(env, "archival", "search", "ada", "parrot")
    # then the text says page 1 of 1 and the count, singular
    assert "Page 1 of 1, 1 passage" in shown.out, shown.out
    beyond = run_memq(env, "archival", "search", "ada", "parrot", "--page", "3")
    assert "No passages on --page 3" in beyond.out and "the last is --page 0" in beyond.out


def test_status_calls_a_slow_database_slow_not_down(tmp_path, monkeypatch):
    # given a working embedded database and a slowness threshold every answer exceeds
    from memq import health
    from memq.settings import Settings

    env = embedded_env(tmp_path, None)
    assert run_memq(env, "agent", "list").code == 0
    monkeypatch.setattr(health, "DB_SLOW_MS", 0.0)
    # when status runs
    doc = health.status(Settings(home=tmp_path))
    # then the database is "warn" with its time, and nothing is down
    assert doc["checks"]["database"]["status"] == "warn"
    assert doc["checks"]["database"]["detail"].startswith("slow: answered in ")
    assert "database" not in doc["down"]
