"""The provider's batch API through litellm: upload a JSONL file, create, retrieve, read, cancel.

litellm 1.81 reaches batches for openai and hosted_vllm (OpenAI-compatible endpoints:
the OpenAI SDK's files/batches calls against api_base), azure and vertex_ai (create,
retrieve, file content), bedrock (create / retrieve through its provider config) and
anthropic (retrieve, file content). memq uses the OpenAI JSONL line format, which the
openai, hosted_vllm and azure routes take as is. Every call has an explicit timeout
(MEMQ_PROVIDER_BATCH_TIMEOUT_S) and no SDK retries: the collector retries on its next poll.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from memq.provider import load_litellm, resolve_route  # noqa: E402

COMPLETION_WINDOW = "24h"
ENDPOINT = "/v1/chat/completions"


@dataclass(frozen=True)
class BatchInfo:
    provider_batch_id: str
    status: str  # the provider's: validating, in_progress, finalizing, completed, failed, expired, cancelling, cancelled
    output_file_id: str | None = None
    error_file_id: str | None = None
    error: str | None = None


class ProviderBatchAPI:
    """One per process; `route` is the litellm route of the model whose requests a batch holds."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._litellm: Any = None

    @property
    def litellm(self) -> Any:
        if self._litellm is None:
            self._litellm = load_litellm()
        return self._litellm

    def _target(self, model: str) -> dict[str, Any]:
        s = self.settings
        route = resolve_route(model, s.llm_api_base)
        _, provider, _, _ = self.litellm.get_llm_provider(route)
        kwargs: dict[str, Any] = {"custom_llm_provider": provider, "timeout": s.provider_batch_timeout_s,
                                  "max_retries": 0}
        if s.llm_api_base:
            kwargs["api_base"] = s.llm_api_base
        if s.llm_api_key:
            kwargs["api_key"] = s.llm_api_key
        return kwargs

    def upload(self, model: str, lines: list[dict[str, Any]]) -> str:
        data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
        created = self.litellm.create_file(file=("memq-batch.jsonl", io.BytesIO(data)), purpose="batch",
                                           **self._target(model))
        return created.id

    def create(self, model: str, input_file_id: str, metadata: dict[str, str]) -> BatchInfo:
        batch = self.litellm.create_batch(completion_window=COMPLETION_WINDOW, endpoint=ENDPOINT,
                                          input_file_id=input_file_id, metadata=metadata, **self._target(model))
        return _info(batch)

    def retrieve(self, model: str, provider_batch_id: str) -> BatchInfo:
        return _info(self.litellm.retrieve_batch(batch_id=provider_batch_id, **self._target(model)))

    def content(self, model: str, file_id: str) -> bytes:
        return self.litellm.file_content(file_id=file_id, **self._target(model)).content

    def cancel(self, model: str, provider_batch_id: str) -> BatchInfo:
        return _info(self.litellm.cancel_batch(batch_id=provider_batch_id, **self._target(model)))

    def batch_cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> tuple[float, float]:
        """(batch price, normal price) of one reply where litellm knows the model; 0 otherwise."""
        litellm = self.litellm
        from litellm.cost_calculator import batch_cost_calculator
        from litellm.types.utils import Usage

        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                      total_tokens=prompt_tokens + completion_tokens)
        # The route (hosted_vllm/... for an api_base) first, then the model as named (openai/gpt-4o-mini).
        for name in dict.fromkeys((resolve_route(model, self.settings.llm_api_base), model)):
            try:
                normal = sum(litellm.cost_per_token(model=name, prompt_tokens=prompt_tokens,
                                                    completion_tokens=completion_tokens))
                batch = sum(batch_cost_calculator(usage=usage, model=name))
            except Exception:  # a model litellm has no price for
                continue
            if normal or batch:
                return float(batch), float(normal)
        return 0.0, 0.0


def _info(batch: Any) -> BatchInfo:
    errors = getattr(batch, "errors", None)
    data = getattr(errors, "data", None) or []
    error = "; ".join(str(getattr(e, "message", e)) for e in data) or None
    return BatchInfo(provider_batch_id=batch.id, status=str(batch.status), output_file_id=batch.output_file_id,
                     error_file_id=batch.error_file_id, error=error)
