"""A worker imports what its steps need, no more (issue 17: worker memory).

A real `memq worker` on an OpenAI-format provider (the scripted server as
``openai/…`` with an api_base) and an OpenAI-format embedding model serves steps
that call the LLM, insert into and search archival memory and index recall, with
Python's import log on (``PYTHONPROFILEIMPORTTIME``: one stderr line per module
the process imports, whenever it does). litellm (~115-145 MiB), the OpenAI SDK it
pulls in, qdrant-client (a Qdrant server is not configured) and torch /
sentence-transformers (no local embedding model) must not be among them.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from helpers import call
from stack import own_stack, worker_and_client

NEVER_ON_THE_DIRECT_ROUTE = ("litellm", "openai", "qdrant_client", "torch", "sentence_transformers",
                             "transformers", "tokenizers", "aiohttp")
_IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)\s*$")


def imported_packages(log: Path) -> set[str]:
    """Top-level packages named in the import log of every process that wrote to `log`."""
    found = set()
    for line in log.read_text(errors="replace").splitlines():
        m = _IMPORT_LINE.match(line)
        if m:
            found.add(m.group(1).split(".")[0])
    return found


def test_a_worker_on_an_openai_format_route_never_imports_litellm(memq_env, llm, tmp_path):
    env = {**memq_env, "MEMQ_QDRANT_PATH": str(tmp_path / "qdrant"), "PYTHONPROFILEIMPORTTIME": "1"}
    env.pop("MEMQ_QDRANT_URL", None)
    with own_stack(env, "memq_test_imports") as env:
        log = tmp_path / "worker.log"
        with worker_and_client(env, log, "--concurrency", "4") as (_, client):
            # given an agent whose steps insert into archival memory, search it and answer
            agent = client.create_agent(f"imports-{uuid.uuid4().hex[:8]}", persona="terse", human="?")
            llm.script(agent.id,
                       call("archival_memory_insert", heartbeat=True, content="Grace's cat is called Pixel"),
                       call("archival_memory_search", heartbeat=True, query="cat"),
                       call("send_message", message="Pixel."))
            # when a message runs through the worker
            run = client.send(agent.id, "What is my cat called?", wait=True, timeout_s=60)
            assert run.status == "done" and run.replies == ["Pixel."], run
            # and a second one, after recall indexing had its chance to embed the first
            assert client.send(agent.id, "thanks", wait=True, timeout_s=60).status == "done"
    packages = imported_packages(log)
    # then the log is the worker's (it imported Celery and the HTTP client the step posts with:
    # http.client; httpx only where a proxy applies)
    assert {"celery", "http", "tiktoken", "qdrant_edge"} <= packages, sorted(packages)
    # and nothing the step does not need was ever imported
    assert not packages & set(NEVER_ON_THE_DIRECT_ROUTE), sorted(packages & set(NEVER_ON_THE_DIRECT_ROUTE))
