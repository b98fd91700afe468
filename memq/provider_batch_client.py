"""llm_mode in the Python client: the checks on it, and what a run or a batch saved with it."""

from __future__ import annotations

from typing import Any

from memq.llm_modes import LlmMode
from storage.repository.errors import BadInput


def checked_mode(settings: Any, llm_mode: str | LlmMode | None) -> LlmMode:
    """The mode asked for; provider_batch needs a broker (its replies are collected by `memq beat`)."""
    try:
        mode = LlmMode(llm_mode or LlmMode.NORMAL.value)
    except ValueError:
        raise BadInput(f"llm_mode must be one of {', '.join(m.value for m in LlmMode)}, not {llm_mode!r}") from None
    if mode is LlmMode.PROVIDER_BATCH and settings.embedded:
        raise BadInput("llm_mode=provider_batch needs MEMQ_BROKER_URL and a running `memq beat` "
                       "(the beat uploads the requests and collects the replies)")
    return mode


class ProviderBatchOps:
    """Provider-batch methods of the client; needs self.rt."""

    rt: Any

    def run_saving(self, run_id: str) -> dict[str, float]:
        """What a provider_batch run's answered steps cost at the batch price, and would have at the normal one."""
        from storage.repository import parked as parked_repo

        with self.rt.db.transaction() as s:
            return parked_repo.run_saving(s, run_id)

    def provider_batch_summary(self, batch_id: str) -> dict[str, Any]:
        """A memq batch's parked steps by state, its provider batches (with their ids) and the saving."""
        from storage.repository import parked as parked_repo

        with self.rt.db.transaction() as s:
            return parked_repo.batch_summary(s, batch_id)
