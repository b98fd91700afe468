"""Nothing starts before migrations: a fresh embedded home's first command is clean."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from scripted_llm import ScriptedLLM  # noqa: E402
from test_cli import API_KEY, embedded_env, run_memq  # noqa: E402


@pytest.mark.parametrize("first", [("agent", "list"), ("agent", "create", "--name", "first"), ("status",)])
def test_first_command_on_a_fresh_home_with_an_embedding_model_warns_of_nothing(
        tmp_path: Path, llm: ScriptedLLM, first: tuple[str, ...]):
    # given a fresh embedded home with an embedding model (the background indexer runs)
    env = embedded_env(tmp_path / "home", llm, MEMQ_EMBEDDING_MODEL="openai/scripted-embed",
                       MEMQ_EMBEDDING_API_BASE=llm.url, MEMQ_EMBEDDING_API_KEY=API_KEY,
                       MEMQ_EMBEDDING_DIM="384")
    # when the first command runs
    result = run_memq(env, *first)
    # then it succeeds and says nothing about missing tables or failed indexing
    assert result.code == 0, result.err
    assert "no such table" not in result.err and "warning" not in result.err.lower(), result.err
