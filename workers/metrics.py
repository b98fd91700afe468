"""Prometheus metrics of a worker process (prometheus-client), all prefixed ``memq_``.

Recorded by :func:`observe_step` around every doorbell a worker answers, from
the step's committed journal row (``StepResult.record``), and served over HTTP
by :func:`start_server` (``MEMQ_METRICS_PORT`` / ``memq worker --metrics-port``).
The queue-depth gauge is read from the broker on each scrape.

The metric objects are built on first use, so importing this module costs
nothing in processes that never record (the CLI imports the doorbell module).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from memq import logging_setup
from memq.constants import ALL_QUEUES, RunStatus, StepOutcome

log = logging.getLogger("memq.step")

# Steps run from milliseconds (tool-only work) to minutes (an LLM with retries).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
OVERHEAD_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

_metrics: SimpleNamespace | None = None
_lock = threading.Lock()


def metrics() -> SimpleNamespace:
    """The process's metric objects (registered in prometheus-client's default registry)."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _build()
    return _metrics


def _build() -> SimpleNamespace:
    from prometheus_client import Counter, Histogram, disable_created_metrics

    disable_created_metrics()  # no *_created series: half the output, no use to dashboards
    m = SimpleNamespace()
    m.steps = Counter("memq_steps", "Committed agent steps, by outcome "
                      "(tool_ok|tool_failed|no_tool|llm_failed|gave_up).", ["outcome"])
    m.doorbells = Counter("memq_doorbells", "Doorbells answered, by result: committed (a step ran), "
                          "leased (the agent's lease was held), no_work, stale (commit fenced off), "
                          "crashed, error (an exception escaped).", ["result"])
    m.step_seconds = Histogram("memq_step_duration_seconds", "Wall time of a committed step, lease to release.",
                               ["queue"], buckets=LATENCY_BUCKETS)
    m.overhead_seconds = Histogram("memq_step_overhead_seconds",
                                   "Wall time of a committed step outside the LLM call "
                                   "(database, context compilation, tools).", buckets=OVERHEAD_BUCKETS)
    m.llm_seconds = Histogram("memq_llm_latency_seconds", "LLM time of a step, every attempt included.",
                              buckets=LATENCY_BUCKETS)
    m.llm_attempts = Counter("memq_llm_attempts", "LLM calls made (first tries and retries).")
    m.llm_retries = Counter("memq_llm_retries", "LLM calls that were retries of a failed attempt.")
    m.tokens = Counter("memq_llm_tokens", "Tokens reported by the LLM, by kind (prompt|completion).", ["kind"])
    m.tool_failures = Counter("memq_tool_failures", "Steps whose tool call failed, by tool "
                              "(unknown: a tool name the agent made up).", ["tool"])
    m.chain_caps = Counter("memq_chain_capped", "Runs stopped at MEMQ_MAX_CHAIN chained steps.")
    m.runs_finished = Counter("memq_runs_finished", "Runs that reached a final status, by status.", ["status"])
    m.takeovers = Counter("memq_lease_takeovers", "Steps that took an agent's lease from a holder that "
                          "never finished (a crashed or stalled worker).")
    m.inline_steps = Counter("memq_steps_inline", "Steps a task ran right after the agent's step before "
                             "(its heartbeat or next event) without a broker round trip "
                             "(MEMQ_INLINE_STEPS_MAX).")
    m.evicted = Counter("memq_evicted_messages", "Messages evicted from context windows to recall memory.")
    # Every labelled series exists (at 0) from the first scrape, so rate() works at once.
    for outcome in StepOutcome:
        m.steps.labels(outcome.value)
    for result in ("committed", "leased", "no_work", "stale", "crashed", "error"):
        m.doorbells.labels(result)
    for status in (RunStatus.DONE, RunStatus.FAILED, RunStatus.CHAIN_CAPPED):
        m.runs_finished.labels(status.value)
    for kind in ("prompt", "completion"):
        m.tokens.labels(kind)
    return m


def count_inline_step() -> None:
    try:
        metrics().inline_steps.inc()
    except Exception:  # noqa: BLE001 - metrics never take a step down
        log.debug("counting an inline step failed", exc_info=True)


class StepObservation:
    """Handed to the code inside :func:`observe_step`; ``done(result)`` records it."""

    def __init__(self, rt: Any, agent_id: str, queue: str) -> None:
        self.rt = rt
        self.agent_id = agent_id
        self.queue = queue
        self.started = time.perf_counter()
        self.recorded = False

    def done(self, result: Any) -> Any:
        """Count the step, log its one line, and return ``result`` unchanged."""
        self.recorded = True
        try:
            _record(self, result, time.perf_counter() - self.started)
        except Exception:  # noqa: BLE001 - metrics never take a step down
            log.debug("recording step metrics failed", exc_info=True)
        return result


@contextmanager
def observe_step(rt: Any, agent_id: str, queue: str) -> Iterator[StepObservation]:
    """Around one doorbell: log context (agent_id, queue, then run_id, step) and metrics."""
    token = logging_setup.bind(agent_id=agent_id, queue=queue)
    logging_setup.adopt_library_loggers()
    obs = StepObservation(rt, agent_id, queue)
    try:
        yield obs
    except BaseException:
        if not obs.recorded:
            try:
                metrics().doorbells.labels("error").inc()
            except Exception:  # noqa: BLE001
                pass
        raise
    finally:
        logging_setup.unbind(token)


def _tool_label(rt: Any, name: str | None) -> str:
    if not name:
        return "none"
    specs = getattr(getattr(rt, "tools", None), "specs", None) or {}
    return name if name in specs else "unknown"


def _record(obs: StepObservation, result: Any, elapsed_s: float) -> None:
    m = metrics()
    m.doorbells.labels(result.reason).inc()
    if result.takeover:
        m.takeovers.inc()
    record = result.record
    status = result.run_status
    if record is None:
        if result.reason in ("stale", "crashed"):
            log.warning("doorbell of agent %s: %s", obs.agent_id, result.reason)
        else:
            log.debug("doorbell of agent %s: %s", obs.agent_id, result.reason)
        return
    outcome = str(record.outcome)
    m.steps.labels(outcome).inc()
    m.step_seconds.labels(obs.queue).observe(elapsed_s)
    llm_s = (record.llm_latency_ms or 0.0) / 1000.0
    m.overhead_seconds.observe(max(0.0, elapsed_s - llm_s))
    attempts = int(record.llm_attempts or 0)
    if attempts:
        m.llm_seconds.observe(llm_s)
        m.llm_attempts.inc(attempts)
        if attempts > 1:
            m.llm_retries.inc(attempts - 1)
    if record.prompt_tokens:
        m.tokens.labels("prompt").inc(record.prompt_tokens)
    if record.completion_tokens:
        m.tokens.labels("completion").inc(record.completion_tokens)
    if outcome == StepOutcome.TOOL_FAILED.value:
        m.tool_failures.labels(_tool_label(obs.rt, record.tool_name)).inc()
    if record.evicted_messages:
        m.evicted.inc(record.evicted_messages)
    if status is not None and RunStatus(status).finished:
        m.runs_finished.labels(str(status)).inc()
        if status == RunStatus.CHAIN_CAPPED:
            m.chain_caps.inc()

    token = logging_setup.bind(run_id=record.run_id, step=record.step_no)
    try:
        # INFO even when the LLM failed: the run's status and error already say so
        # (and a CLI running steps in-process shows WARNING and up).
        failed = outcome in (StepOutcome.LLM_FAILED.value, StepOutcome.GAVE_UP.value)
        log.info(
            "step %s: %s%s, run %s, %d+%d tokens, llm %.0f ms (%d attempt%s), %.0f ms in all%s",
            record.step_no, outcome, f" ({record.tool_name})" if record.tool_name else "",
            status, record.prompt_tokens or 0, record.completion_tokens or 0, llm_s * 1000,
            attempts, "" if attempts == 1 else "s", elapsed_s * 1000,
            f": {record.error}" if failed and record.error else "",
        )
    finally:
        logging_setup.unbind(token)


# -- serving --------------------------------------------------------------------
class QueueDepthCollector:
    """``memq_queue_depth{queue}`` and ``memq_broker_up``, read from the broker on each scrape."""

    def __init__(self, broker_url: str, queues: Sequence[str] = ALL_QUEUES, timeout_s: float = 1.0) -> None:
        self.broker_url = broker_url
        self.queues = list(queues)
        self.timeout_s = timeout_s

    def describe(self) -> list:
        return []  # collected on scrape only; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from workers.queues import queue_depths

        up = GaugeMetricFamily("memq_broker_up", "1 when the broker answered the last queue-depth read.")
        depth = GaugeMetricFamily("memq_queue_depth", "Messages waiting in each broker queue "
                                  "(Redis LLEN; RabbitMQ passive declare).", labels=["queue"])
        try:
            depths = queue_depths(self.broker_url, self.queues, timeout_s=self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - a down broker is a value, not a failed scrape
            log.debug("queue depth read failed: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for queue, count in depths.items():
            depth.add_metric([queue], count)
        yield up
        yield depth


_server_started = False


def start_server(settings: Any, port: int | None = None) -> int | None:
    """Serve /metrics on ``port`` (else MEMQ_METRICS_PORT); returns the port, or None when unset."""
    global _server_started
    port = port if port is not None else settings.metrics_port
    if port is None or _server_started:
        return None
    from prometheus_client import REGISTRY, start_http_server

    metrics()  # every series exists (at zero) from the first scrape
    if settings.broker_url:
        REGISTRY.register(QueueDepthCollector(settings.broker_url))
    addr = getattr(settings, "metrics_addr", None) or "0.0.0.0"
    start_http_server(port, addr=addr)
    _server_started = True
    logging.getLogger("memq.worker").info("metrics on http://%s:%d/metrics", addr, port)
    return port
