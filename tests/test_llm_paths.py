"""The direct route (workers/llm_direct.py) and litellm.completion behave alike.

Both are driven against the scripted OpenAI-compatible server: the same replies,
the same retries, the same error kinds. The request body is compared in
tests/test_llm_route.py.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from memq.settings import Settings
from workers.base_tools import base_toolset
from workers.llm import ContextTooLong, LLMClient, LLMError

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

TOOLS = base_toolset().schemas
PATHS = [pytest.param(True, id="direct"), pytest.param(False, id="litellm.completion")]
# litellm's logging thread serializes its response models after the litellm.completion tests.
pytestmark = pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")


def _client(llm, direct: bool, **overrides) -> LLMClient:
    values = dict(llm_model="openai/scripted", llm_api_base=llm.url, llm_api_key="k", llm_timeout_s=1.0,
                  llm_max_retries=2, llm_backoff_s=0.01, llm_direct=direct)
    values.update(overrides)
    return LLMClient(Settings(**values))


def _messages(key: str, text: str = "hello") -> list[dict]:
    return [{"role": "system", "content": f"agent {key}"},
            {"role": "user", "content": f'{{"type": "user_message", "message": "{text}"}}'}]


def _key(request, direct: bool) -> str:
    return f"{request.node.name}-{direct}"


@pytest.mark.parametrize("direct", PATHS)
def test_tool_call_and_usage_come_back(llm, request, direct):
    # given a scripted tool call
    key = _key(request, direct)
    llm.script(key, {"tool": "core_memory_append", "args": {"label": "human", "content": "likes tea"}})
    # when the client calls
    reply = _client(llm, direct).complete(_messages(key), TOOLS)
    # then the call, its arguments and the usage are parsed
    assert [c.name for c in reply.tool_calls] == ["core_memory_append"]
    assert '"likes tea"' in reply.tool_calls[0].arguments
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0 and reply.attempts == 1
    assert llm.requests(key)[0]["max_tokens"] == 1024


@pytest.mark.parametrize("direct", PATHS)
@pytest.mark.parametrize("fault", [{"status": 500}, {"status": 503}, {"status": 429, "retry_after": 0},
                                   {"garbage": True}, {"empty_choices": True}, {"sleep_s": 1.5}],
                         ids=["500", "503", "429", "garbage", "empty", "timeout"])
def test_a_fault_then_success_is_retried(llm, request, direct, fault, caplog):
    # given one faulty answer before a good one
    key = _key(request, direct)
    llm.script(key, fault)
    # when the client calls
    with caplog.at_level("INFO", logger="memq.provider"):
        reply = _client(llm, direct).complete(_messages(key, "again"), TOOLS)
    # then the second attempt's answer is used
    assert reply.attempts == 2
    assert reply.tool_calls[0].name == "send_message" and "echo: again" in reply.tool_calls[0].arguments
    # and the failed attempt was logged with what went wrong
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["provider call attempt 1 of 3 failed"]
    assert reply.retries[0] in caplog.records[0].getMessage()


@pytest.mark.parametrize("direct", PATHS)
def test_retry_after_is_honoured(llm, request, direct):
    key = _key(request, direct)
    llm.script(key, {"status": 429, "retry_after": 1})
    started = time.perf_counter()
    reply = _client(llm, direct, llm_backoff_s=0.01).complete(_messages(key), TOOLS)
    assert reply.attempts == 2 and time.perf_counter() - started >= 1.0


@pytest.mark.parametrize("direct", PATHS)
def test_exhausted_retries_name_the_provider_error(llm, request, direct):
    key = _key(request, direct)
    llm.script(key, {"status": 500, "repeat": 3})
    with pytest.raises(LLMError) as err:
        _client(llm, direct).complete(_messages(key), TOOLS)
    assert err.value.attempts == 3
    assert "answered HTTP 500" in str(err.value) and "InternalServerError" not in str(err.value)


@pytest.mark.parametrize("direct", PATHS)
def test_context_too_long_is_not_retried(llm, request, direct):
    key = _key(request, direct)
    llm.script(key, {"status": 400, "message": "This model's maximum context length is 8192 tokens. "
                                               "However, your messages resulted in 9000 tokens."})
    with pytest.raises(ContextTooLong) as err:
        _client(llm, direct).complete(_messages(key), TOOLS)
    assert err.value.attempts == 1


@pytest.mark.parametrize("direct", PATHS)
def test_unreachable_provider_is_a_clear_error(llm, direct):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = _client(llm, direct, llm_api_base=f"http://127.0.0.1:{port}/v1", llm_max_retries=1)
    with pytest.raises(LLMError) as err:
        client.complete(_messages("nobody"), TOOLS)
    assert err.value.attempts == 2 and "(connection refused)" in str(err.value)


def test_the_direct_route_serves_openai_format_routes_only(llm):
    direct = _client(llm, True).direct
    assert direct.supports("hosted_vllm/scripted")
    assert direct.supports("openai/gpt-4o-mini")
    assert not direct.supports("anthropic/claude-3-5-sonnet-20240620")
    assert _client(llm, False).direct is None


def test_hundreds_of_concurrent_calls_each_succeed_at_the_first_attempt(llm, request, monkeypatch):
    # given one client shared by 300 threads (a worker's step threads) and a slow provider
    client = _client(llm, True, llm_timeout_s=30.0, llm_max_retries=0)
    monkeypatch.setattr(llm, "latency_ms", 1000)
    key = _key(request, True)
    llm.set_default(key, {"tool": "send_message", "args": {"message": "ok"}})
    replies, errors = [], []

    def call(i: int) -> None:
        try:
            replies.append(client.complete(_messages(key, f"m{i}"), TOOLS))
        except Exception as exc:  # collected: the assertion below names them
            errors.append(repr(exc))

    # when all of them call at once
    threads = [threading.Thread(target=call, args=(i,)) for i in range(300)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    # then every call got its answer on its first attempt (no pool error, no reset connection)
    assert errors == []
    assert len(replies) == 300 and all(r.attempts == 1 and r.tool_calls[0].name == "send_message" for r in replies)
