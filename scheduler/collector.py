"""The provider-batch collector, run by `memq beat` (llm_mode=provider_batch, issue 18).

Each pass:
  1. rows whose step has committed are marked resumed;
  2. uploads whose beat died before recording the provider's id are given up (their
     lines are parked again: a batch the provider still runs is never read, and a step
     commits once however many replies come back for it);
  3. per model, parked requests go up as one batch when MEMQ_PROVIDER_BATCH_MAX_REQUESTS
     wait or the oldest waited MEMQ_PROVIDER_BATCH_MAX_WAIT_S;
  4. open batches due for a poll (backoff from MEMQ_PROVIDER_BATCH_POLL_S to _POLL_MAX_S)
     are retrieved; a finished one's replies are stored and their agents rung. Lines that
     errored or are missing are parked again, or take the normal route after
     MEMQ_PROVIDER_BATCH_LINE_ATTEMPTS batches; an expired or failed batch's lines too.
Several beats may run: rows are claimed with SKIP LOCKED and every transition is guarded.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from memq.llm_modes import PROVIDER_FINISHED, ProviderBatchState, custom_id, parse_custom_id
from storage.repository import parked as parked_repo
from workers.provider_batch_api import ENDPOINT, ProviderBatchAPI

log = logging.getLogger("memq.collector")

FINAL_STATE = {"completed": ProviderBatchState.DONE, "expired": ProviderBatchState.EXPIRED,
               "failed": ProviderBatchState.FAILED, "cancelled": ProviderBatchState.CANCELLED}


@dataclass
class PassStats:
    resumed: int = 0
    uploaded: list[int] = field(default_factory=list)  # requests per batch uploaded in this pass
    finished: int = 0
    rung: int = 0
    lost: int = 0


class Collector:
    def __init__(self, rt: Any, doorbell: Any, api: ProviderBatchAPI | None = None) -> None:
        self.rt = rt
        self.doorbell = doorbell
        self.api = api or ProviderBatchAPI(rt.settings)

    def tick(self, now_s: float | None = None) -> PassStats:
        now_s = time.time() if now_s is None else now_s
        stats = PassStats()
        s_ = self.rt.settings
        with self.rt.db.transaction() as s:
            stats.resumed = parked_repo.sweep_resumed(s)
            stale_before = _dt(now_s - s_.provider_batch_upload_stale_s)
            for pb_id in parked_repo.stale_uploads(s, older_than=stale_before):
                n = parked_repo.give_back(s, pb_id, ProviderBatchState.LOST,
                                          "its upload was never recorded (the beat stopped)", count_attempt=True)
                log.warning("provider batch %s lost before its id was recorded: %d line(s) parked again", pb_id, n)
                stats.lost += 1
            models = parked_repo.due_models(s, now=_dt(now_s), max_requests=s_.provider_batch_max_requests,
                                            max_wait_s=s_.provider_batch_max_wait_s)
        for model in models:
            size = self._upload(model, now_s)
            if size:
                stats.uploaded.append(size)
        with self.rt.db.transaction() as s:
            due = parked_repo.claim_polls(s, now_s=now_s, poll_s=s_.provider_batch_poll_s,
                                          poll_max_s=s_.provider_batch_poll_max_s)
        for row in due:
            rung = self._poll(row)
            if rung is not None:
                stats.finished += 1
                stats.rung += rung
        return stats

    def _upload(self, model: str, now_s: float) -> int:
        with self.rt.db.transaction() as s:
            claimed = parked_repo.claim_for_upload(s, model, self.rt.settings.provider_batch_max_requests)
        if claimed is None:
            return 0
        pb_id, rows = claimed
        lines = [{"custom_id": custom_id(r.agent_id, r.step_no), "method": "POST", "url": ENDPOINT,
                  "body": r.request} for r in rows]
        try:
            file_id = self.api.upload(model, lines)
            info = self.api.create(model, file_id, {"memq_provider_batch": pb_id})
        except Exception as exc:
            with self.rt.db.transaction() as s:
                parked_repo.give_back(s, pb_id, ProviderBatchState.FAILED, f"upload failed: {exc}",
                                      count_attempt=False)
            log.warning("provider batch upload of %d %s request(s) failed: %s", len(rows), model, exc)
            return 0
        with self.rt.db.transaction() as s:
            recorded = parked_repo.record_submitted(
                s, pb_id, provider_batch_id=info.provider_batch_id, input_file_id=file_id,
                provider_status=info.status, next_poll_s=now_s + self.rt.settings.provider_batch_poll_s)
        if not recorded:  # given up as lost meanwhile: its lines went up again elsewhere
            self._cancel_quietly(model, info.provider_batch_id)
            return 0
        log.info("provider batch %s (%s): %d request(s) of %s", pb_id, info.provider_batch_id, len(rows), model)
        return len(rows)

    def _poll(self, row: Any) -> int | None:
        """Poll one open batch; the agents rung when it finished (None: not finished)."""
        try:
            if row.state == ProviderBatchState.CANCELLING.value:
                info = self.api.cancel(row.model, row.provider_batch_id)
                if info.status not in PROVIDER_FINISHED:
                    info = self.api.retrieve(row.model, row.provider_batch_id)
            else:
                info = self.api.retrieve(row.model, row.provider_batch_id)
        except Exception as exc:
            log.warning("polling provider batch %s failed (retried at its next poll): %s", row.id, exc)
            return None
        if info.status not in PROVIDER_FINISHED:
            with self.rt.db.transaction() as s:
                parked_repo.set_batch(s, row.id, provider_status=info.status)
            return None
        try:
            answers, errors = self._read(row, info)
        except Exception as exc:
            log.warning("reading provider batch %s failed (retried at its next poll): %s", row.id, exc)
            return None
        final = FINAL_STATE.get(info.status, ProviderBatchState.FAILED)
        if row.state == ProviderBatchState.CANCELLING.value:
            final = ProviderBatchState.CANCELLED
        with self.rt.db.transaction() as s:
            parked_repo.set_batch(s, row.id, provider_status=info.status, output_file_id=info.output_file_id,
                                  error_file_id=info.error_file_id, error=info.error)
            ring = parked_repo.apply_results(
                s, row.id, answers=answers, errors=errors, final=final,
                max_attempts=self.rt.settings.provider_batch_line_attempts,
                missing_error=f"no output for the line (provider batch {info.status})")
        for agent_id, queue in dict.fromkeys(ring):
            self.doorbell.ring(agent_id, queue)
        log.info("provider batch %s %s: %d answered, %d error(s)", row.id, info.status, len(answers), len(errors))
        return len(ring)

    def _read(self, row: Any, info: Any) -> tuple[dict, dict]:
        answers: dict[tuple[str, int], dict] = {}
        errors: dict[tuple[str, int], str] = {}
        round_ms = (time.time() - _epoch(row.created_at)) * 1000
        for file_id in (info.output_file_id, info.error_file_id):
            if not file_id:
                continue
            for raw in self.api.content(row.model, file_id).decode("utf-8", "replace").splitlines():
                if not raw.strip():
                    continue
                key, reply, error = self._line(row.model, raw, round_ms)
                if key is None:
                    continue
                if reply is not None:
                    answers[key] = reply
                    errors.pop(key, None)
                elif key not in answers:
                    errors[key] = error or "the line failed"
        return answers, errors

    def _line(self, model: str, raw: str, round_ms: float) -> tuple[tuple[str, int] | None, dict | None, str | None]:
        """(step identity, reply, error) of one output or error line."""
        try:
            obj = json.loads(raw)
        except ValueError:
            return None, None, None
        key = parse_custom_id(obj.get("custom_id", "")) if isinstance(obj, dict) else None
        if key is None:
            return None, None, None
        response = obj.get("response") or {}
        if obj.get("error") or response.get("status_code") != 200:
            err = obj.get("error") or (response.get("body") or {}).get("error") or {}
            return key, None, f"{err.get('code') or response.get('status_code')}: {err.get('message') or err}"
        try:
            body = response["body"]
            message = body["choices"][0]["message"]
            calls = [{"id": c.get("id") or f"call_{uuid.uuid4().hex[:24]}", "name": c["function"]["name"] or "",
                      "arguments": c["function"].get("arguments") or ""} for c in message.get("tool_calls") or []]
        except (KeyError, IndexError, TypeError) as exc:
            return key, None, f"unusable reply: {exc!r}"
        usage = body.get("usage") or {}
        pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        batch_cost, normal_cost = self.api.batch_cost(model, pt, ct)
        return key, {"content": message.get("content") or None, "tool_calls": calls, "prompt_tokens": pt,
                     "completion_tokens": ct, "cost_usd": batch_cost, "normal_cost_usd": normal_cost,
                     "latency_ms": round_ms}, None

    def _cancel_quietly(self, model: str, provider_batch_id: str) -> None:
        try:
            self.api.cancel(model, provider_batch_id)
        except Exception as exc:
            log.warning("could not cancel the unrecorded provider batch %s: %s", provider_batch_id, exc)


def _dt(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, timezone.utc)


def _epoch(dt: datetime) -> float:
    dt = dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt
    return dt.timestamp()


__all__ = ["Collector", "PassStats"]
