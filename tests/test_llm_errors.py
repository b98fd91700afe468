"""Provider errors read as what to fix: where memq tried to connect and what went wrong.

Both LLM routes (direct and litellm.completion) against real sockets: a closed
port, a host name that does not resolve, the scripted server answering 401, 404,
500 or too slowly; then a refused connection through a real worker, as
`memq send --json`, the system_alert and the CLI line show it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from helpers import user_events
from memq.settings import Settings
from storage.embeddings import EmbeddingError, Embedder
from workers.base_tools import base_toolset
from workers.llm import LLMClient, LLMError

TOOLS = base_toolset().schemas
PATHS = [pytest.param(True, id="direct"), pytest.param(False, id="litellm.completion")]
CLASS_NAMES = ("Exception", "Error", "Hosted_vllm", "litellm")


def closed_port_url() -> str:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _complete(base: str, direct: bool, key: str = "x", **overrides) -> str:
    values = dict(llm_model="openai/scripted", llm_api_base=base, llm_api_key="k", llm_timeout_s=1.0,
                  llm_max_retries=1, llm_backoff_s=0.01, llm_direct=direct)
    values.update(overrides)
    messages = [{"role": "system", "content": f"agent {key}"}, {"role": "user", "content": "hi"}]
    with pytest.raises(LLMError) as err:
        LLMClient(Settings(**values)).complete(messages, TOOLS)
    text = str(err.value)
    assert not any(name in text for name in CLASS_NAMES), text
    return text


@pytest.mark.parametrize("direct", PATHS)
def test_a_closed_port_says_cannot_connect_with_the_url(direct):
    url = closed_port_url()
    assert f"cannot connect to {url} (connection refused)" in _complete(url, direct)


@pytest.mark.parametrize("direct", PATHS)
def test_a_host_that_does_not_resolve_is_named(direct):
    text = _complete("http://no-such-host.invalid:8000/v1", direct)
    assert "cannot connect to http://no-such-host.invalid:8000/v1" in text and "not found" in text


@pytest.mark.parametrize("direct", PATHS)
@pytest.mark.parametrize("status, said, expected", [
    (401, "Incorrect API key provided",
     ["the provider refused the API key (HTTP 401 from {url}); check MEMQ_LLM_API_KEY", "after 1 attempt(s)"]),
    (404, "The model `scripted` does not exist",
     ["model 'scripted' not found at {url} (HTTP 404); check MEMQ_LLM_MODEL and MEMQ_LLM_API_BASE"]),
    (500, "the GPU fell over", ["{url} answered HTTP 500: ", "the GPU fell over"]),
], ids=["401-key", "404-model", "500-words"])
def test_an_http_error_says_what_to_fix(llm, request, direct, status, said, expected):
    # given a provider answering this status (401/404 are not retried)
    key = request.node.name
    llm.script(key, {"status": status, "message": said, "repeat": 2})
    # when the client calls, then the error names the URL and what to change
    text = _complete(llm.url, direct, key)
    for fragment in expected:
        assert fragment.format(url=llm.url) in text, text


@pytest.mark.parametrize("direct", PATHS)
def test_no_answer_in_time_names_the_timeout(llm, request, direct):
    key = f"{request.node.name}"
    llm.script(key, {"sleep_s": 1.5, "repeat": 2})
    text = _complete(llm.url, direct, key, llm_timeout_s=0.5)
    assert f"no answer from {llm.url} within 0.5 s" in text


def test_embeddings_use_the_same_words():
    url = closed_port_url()
    embedder = Embedder("openai/e", api_base=url, api_key="k", dim=4, timeout_s=1.0, max_retries=0)
    with pytest.raises(EmbeddingError) as err:
        embedder.embed(["hello"])
    assert f"cannot connect to {url} (connection refused)" in str(err.value)


@pytest.fixture(scope="module")
def dead_llm_env(memq_env, tmp_path_factory):
    """A stack of its own (database, Redis db, `memq worker`) whose LLM is a closed port:
    the suite's worker never sees its agents."""
    from stack import WorkerProcess, own_stack

    with own_stack(memq_env, "memq_test_dead", MEMQ_LLM_API_BASE=closed_port_url()) as env:
        proc = WorkerProcess(env, tmp_path_factory.mktemp("dead") / "worker.log", "--concurrency", "4")
        try:
            proc.wait_ready()
            yield env
        finally:
            proc.stop()


def _memq(env, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run a command with --json: the process and its JSON document."""
    proc = subprocess.run([sys.executable, "-m", "memq.cli.main", *args, "--json"], env=env,
                          capture_output=True, text=True, timeout=90)
    assert proc.stdout.strip(), (proc.returncode, proc.stderr)
    return proc, json.loads(proc.stdout)


def test_a_refused_connection_through_the_worker_reads_the_same_everywhere(dead_llm_env):
    # given an agent on a worker whose LLM endpoint refuses connections
    created = _memq(dead_llm_env, "agent", "create", "--name", "refused")
    assert "id" in created[1], created
    agent_id = created[1]["id"]
    # when a message is sent and waited for through the CLI
    proc, doc = _memq(dead_llm_env, "send", agent_id, "hello?", "--wait", "--timeout", "60")
    # then the run's error, the CLI line and the system_alert all say where it could not connect
    assert proc.returncode == 1 and doc["status"] == "failed", proc.stderr
    expected = f"cannot connect to {dead_llm_env['MEMQ_LLM_API_BASE']} (connection refused)"
    assert expected in doc["error"], doc["error"]
    assert expected in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    record = _memq(dead_llm_env, "messages", agent_id)[1]["messages"]
    events = [json.loads(m["content"]) for m in record if m["role"] == "user"]
    assert events[-1]["type"] == "system_alert" and expected in events[-1]["message"]
    assert not any(name in doc["error"] + events[-1]["message"] for name in CLASS_NAMES)


@pytest.mark.parametrize("status, expected", [(401, "the provider refused the API key (HTTP 401"),
                                              (404, "model 'scripted' not found at")])
def test_key_and_model_errors_fail_the_run_in_words(client, agent, llm, status, expected):
    # given a provider that refuses the key / does not know the model
    llm.script(agent.id, {"status": status, "message": "no"})  # not retried: one answer
    # when a message is sent through the worker
    run = client.send(agent.id, "hello?", wait=True, timeout_s=30)
    # then the run failed, saying so in words, and the agent still answers the next message
    assert run.status == "failed" and expected in run.error, run.error
    alert = user_events(client, agent.id)[-1]
    assert alert["type"] == "system_alert" and expected in alert["message"]
    assert client.send(agent.id, "again", wait=True, timeout_s=30).replies == ["echo: again"]
