"""Settings (env prefix ``MEMQ_``). With nothing set, memq runs embedded under ``./.memq/``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob memq reads. Names follow DESIGN §4; extra ones carry their unit."""

    model_config = SettingsConfigDict(env_prefix="MEMQ_", extra="ignore")

    home: Path = Path(".memq")
    database_url: str | None = None
    broker_url: str | None = None
    qdrant_url: str | None = None
    qdrant_path: str | None = None
    qdrant_api_key: str | None = Field(default=None, repr=False)

    llm_model: str | None = None
    llm_api_base: str | None = None
    llm_api_key: str | None = Field(default=None, repr=False)
    llm_timeout_s: float = 60.0
    llm_max_retries: int = 3
    llm_backoff_s: float = 1.0
    llm_backoff_max_s: float = 30.0
    llm_max_tokens: int = 1024
    # OpenAI-format routes skip litellm.completion's per-call work (workers/llm_direct.py).
    llm_direct: bool = True
    # HTTP connections a process keeps to the provider on that route (calls in flight beyond it wait).
    llm_max_connections: int = 1000
    # Agents whose in-context messages a worker process keeps between steps (0: none).
    history_cache_agents: int = 256
    # Provider limits per model, shared by all workers through Redis (0/unset: none).
    llm_rpm: int | None = None
    llm_tpm: int | None = None
    redis_url: str | None = None  # for the shared limits; defaults to a redis:// broker

    @property
    def resolved_redis_url(self) -> str | None:
        if self.redis_url:
            return self.redis_url
        if self.broker_url and self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return None

    embedding_model: str | None = None
    embedding_api_base: str | None = None
    embedding_api_key: str | None = Field(default=None, repr=False)
    embedding_dim: int = 384

    context_window: int | None = None
    context_warn_ratio: float = 0.75
    context_target_ratio: float = 0.5
    context_margin_ratio: float = 0.05
    max_chain: int = 20
    # A task that committed a step runs the agent's next one itself (its heartbeat or the next
    # waiting event) instead of a broker round trip, up to this many steps, and, once every
    # step thread of the worker is busy, this long; then it rings the broker so other agents'
    # doorbells get the thread. 1: one step per task.
    inline_steps_max: int = 64
    inline_budget_s: float = 0.5
    max_message_chars: int = 12_000  # ~3 000 tokens: fits the default 8 192-token window beside full core memory
    core_block_limit_chars: int = 2_000

    # Every Postgres round trip of the client paths (Client, the CLI's full client, `memq serve`)
    # gives up after this long, and so does a new connection (whole seconds, at least 2): a frozen
    # server answers DatabaseUnavailable instead of holding the call (storage/deadline.py).
    db_deadline_s: float = Field(default=5.0, gt=0)
    lease_s: float = 15.0
    step_max_attempts: int = 5
    worker_concurrency: int = 200
    reconcile_every_s: float = 5.0
    reconcile_idle_s: float = 3.0
    reconcile_rering_s: float = 30.0
    schedule_grace_s: float = 30.0
    schedule_missed: str = "coalesce"

    # llm_mode=provider_batch (issue 18): parked requests of a model go up as one provider batch
    # when this many wait or the oldest waited this long; open batches are polled from poll_s,
    # doubling to poll_max_s. A line that failed in line_attempts batches takes the normal route.
    # An upload whose provider id was never recorded (its beat died) is given up after upload_stale_s.
    provider_batch_max_requests: int = 1000
    provider_batch_max_wait_s: float = 60.0
    provider_batch_poll_s: float = 10.0
    provider_batch_poll_max_s: float = 300.0
    provider_batch_line_attempts: int = 2
    provider_batch_upload_stale_s: float = 300.0
    provider_batch_timeout_s: float = 60.0  # each files / batches call to the provider

    flower_user: str | None = None
    flower_password: str | None = Field(default=None, repr=False)

    # Operations (deploy/README.md): a worker's Prometheus endpoint and the log format.
    metrics_port: int | None = None
    metrics_addr: str = "0.0.0.0"

    # `memq serve`: the largest request body, and how long a blocking send waits for its run.
    api_max_body_bytes: int = 1_048_576
    api_wait_s: float = 300.0
    # A waiting send wakes on the step's Redis notification; without one it re-reads its run
    # this often. A key's lookup is kept this long (a revoked key stops working within it).
    api_poll_s: float = 0.25
    api_key_cache_s: float = 5.0
    api_metrics_token: str | None = Field(default=None, repr=False)  # set: /metrics needs it as a bearer token
    # Callbacks of `create_async(callback_url=...)`: signed with this secret (HMAC-SHA256), posted
    # with this timeout, retried with exponential backoff up to this many attempts.
    callback_secret: str | None = Field(default=None, repr=False)
    callback_timeout_s: float = 10.0
    callback_max_attempts: int = 8
    callback_backoff_s: float = 1.0
    callback_backoff_max_s: float = 300.0
    log_json: bool = False
    log_level: str = "INFO"

    @property
    def embedded(self) -> bool:
        """No broker configured: steps run on an in-process worker."""
        return not self.broker_url

    @property
    def resolved_qdrant_path(self) -> str:
        """The embedded vector store (used when no MEMQ_QDRANT_URL is set)."""
        return self.qdrant_path or str((self.home / "qdrant").resolve())

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'memq.db').resolve()}"
