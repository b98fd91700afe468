"""How a run's steps call the model, and the states of the provider-batch route (issue 18)."""

from __future__ import annotations

from enum import StrEnum


class LlmMode(StrEnum):
    """runs.llm_mode and steps.llm_mode."""

    NORMAL = "normal"  # the step calls the model itself
    PROVIDER_BATCH = "provider_batch"  # the step parks its request for the provider's batch API


class ParkState(StrEnum):
    """Where a parked step's request stands (parked_steps.state)."""

    PARKED = "parked"  # waiting to be uploaded in the next provider batch
    SUBMITTED = "submitted"  # in a provider batch that has not finished
    ANSWERED = "answered"  # the reply is stored: the step resumes with it
    FALLBACK = "fallback"  # failed in too many batches: the step calls the model itself
    RESUMED = "resumed"  # the step committed
    CANCELLED = "cancelled"  # its run was cancelled (with its memq batch) before it resumed

    @property
    def waiting(self) -> bool:
        """The agent waits for the provider: no step of it may run."""
        return self in (ParkState.PARKED, ParkState.SUBMITTED)


class ProviderBatchState(StrEnum):
    """Where a batch uploaded to the provider stands (provider_batches.state)."""

    UPLOADING = "uploading"  # claimed its lines; the upload / create has not been recorded yet
    SUBMITTED = "submitted"  # the provider has it; polled with backoff
    DONE = "done"  # its output was read (lines that failed went back to be parked again)
    EXPIRED = "expired"  # past its window: lines without output were parked again
    FAILED = "failed"  # the provider failed it, or the upload failed: its lines were parked again
    LOST = "lost"  # the beat died before recording the provider's id: its lines were parked again
    CANCELLING = "cancelling"  # its memq batch was cancelled: the provider is asked to cancel it
    CANCELLED = "cancelled"

    @property
    def open(self) -> bool:
        return self in (ProviderBatchState.UPLOADING, ProviderBatchState.SUBMITTED, ProviderBatchState.CANCELLING)


# The provider's batch statuses (OpenAI's names; litellm maps the others' onto them).
PROVIDER_FINISHED = frozenset({"completed", "failed", "expired", "cancelled"})


def custom_id(agent_id: str, step_no: int) -> str:
    """A batch line's custom id: the step's identity."""
    return f"{agent_id}:{step_no}"


def parse_custom_id(value: str) -> tuple[str, int] | None:
    agent_id, sep, step = str(value).rpartition(":")
    if not sep or not agent_id or not step.isdigit():
        return None
    return agent_id, int(step)
