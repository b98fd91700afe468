"""Files and Batches endpoints of the scripted LLM server (OpenAI's batch API, issue 18).

A batch answers each line as the chat endpoint would (scripts, defaults and the echo
apply, and the requests are recorded), when it completes. Status transitions:
validating (on create) -> in_progress (first retrieve) -> completed once
``complete_s`` passed since creation (or failed / expired / cancelled by the knobs).

Knobs (``set_batch_knobs``; counts are used up as batches complete):
  complete_s           seconds from create to completion (slow completion)
  fail_next_lines      this many of the next lines go to the error file (partial failure)
  drop_next_lines      this many of the next lines are missing from both files
  expire_next_batches  this many batches end "expired": ``expire_done`` lines answered, the
                       rest in the error file with code batch_expired
  fail_next_batches    this many batches end "failed" (validation), no output
  duplicate_output     every output line is written twice
Hooks (``on_batch(event, fn)``): "create" runs before the create is answered, "content"
before an output file is served (tests kill a beat or a worker there).
``batch_stats()`` counts batches, lines and custom ids submitted more than once.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from email.parser import BytesParser
from email.policy import HTTP


class BatchAPI:
    """State of the files and batches; the owner's ``chat(body)`` answers a line."""

    def __init__(self, chat) -> None:
        self._chat = chat
        self._lock = threading.Lock()
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.knobs: dict = {}
        self.hooks: dict = {}
        self.seen_ids: dict[str, int] = {}
        self.reset_knobs()

    def reset_knobs(self) -> None:
        with self._lock:
            self.knobs = {"complete_s": 0.0, "fail_next_lines": 0, "drop_next_lines": 0, "expire_next_batches": 0,
                          "expire_done": 0, "fail_next_batches": 0, "duplicate_output": False}
            self.hooks = {}

    def reset(self) -> None:
        self.reset_knobs()
        with self._lock:
            self.files.clear()
            self.batches.clear()
            self.seen_ids.clear()

    def stats(self) -> dict:
        with self._lock:
            sizes = [b["request_counts"]["total"] for b in self.batches.values()]
            return {"batches": len(self.batches), "lines": sum(sizes), "sizes": sizes,
                    "duplicate_ids": sum(1 for n in self.seen_ids.values() if n > 1),
                    "statuses": [b["status"] for b in self.batches.values()]}

    # -- files ---------------------------------------------------------------
    def upload(self, content_type: str, raw: bytes) -> tuple[int, dict]:
        msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
        data, purpose, name = None, "batch", "input.jsonl"
        for part in msg.iter_parts():
            field = part.get_param("name", header="content-disposition")
            if field == "file":
                data = part.get_payload(decode=True)
                name = part.get_filename() or name
            elif field == "purpose":
                purpose = part.get_payload(decode=True).decode()
        if data is None:
            return 400, _err("no file part")
        return 200, self._store(data, purpose, name)

    def _store(self, data: bytes, purpose: str, name: str) -> dict:
        fid = "file-" + uuid.uuid4().hex[:24]
        meta = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": name, "purpose": purpose, "status": "processed"}
        with self._lock:
            self.files[fid] = {"meta": meta, "data": data}
        return meta

    def file(self, fid: str, content: bool) -> tuple[int, dict | bytes]:
        with self._lock:
            f = self.files.get(fid)
        if f is None:
            return 404, _err(f"no such file: {fid}")
        if content:
            hook = self.hooks.get("content")
            if hook is not None:
                hook(fid)
            return 200, f["data"]
        return 200, f["meta"]

    # -- batches -------------------------------------------------------------
    def create(self, body: dict) -> tuple[int, dict]:
        fid = body.get("input_file_id")
        with self._lock:
            f = self.files.get(fid)
        if f is None:
            return 400, _err(f"no such file: {fid}")
        lines = [json.loads(x) for x in f["data"].decode().splitlines() if x.strip()]
        bid = "batch_" + uuid.uuid4().hex[:24]
        batch = {"id": bid, "object": "batch", "endpoint": body.get("endpoint", "/v1/chat/completions"),
                 "errors": None, "input_file_id": fid, "completion_window": body.get("completion_window", "24h"),
                 "status": "validating", "output_file_id": None, "error_file_id": None,
                 "created_at": int(time.time()), "in_progress_at": None, "expires_at": int(time.time()) + 86400,
                 "completed_at": None, "failed_at": None, "expired_at": None, "cancelled_at": None,
                 "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                 "metadata": body.get("metadata"), "_lines": lines, "_t0": time.monotonic()}
        with self._lock:
            for line in lines:
                self.seen_ids[line.get("custom_id")] = self.seen_ids.get(line.get("custom_id"), 0) + 1
            self.batches[bid] = batch
        hook = self.hooks.get("create")
        if hook is not None:
            hook(bid)
        return 200, _public(batch)

    def retrieve(self, bid: str) -> tuple[int, dict]:
        with self._lock:
            b = self.batches.get(bid)
        if b is None:
            return 404, _err(f"no such batch: {bid}")
        if b["status"] == "validating":
            b["status"], b["in_progress_at"] = "in_progress", int(time.time())
        elif b["status"] == "cancelling":
            b["status"], b["cancelled_at"] = "cancelled", int(time.time())
        elif b["status"] == "in_progress" and time.monotonic() - b["_t0"] >= float(self.knobs["complete_s"]):
            self._finish(b)
        return 200, _public(b)

    def cancel(self, bid: str) -> tuple[int, dict]:
        with self._lock:
            b = self.batches.get(bid)
        if b is None:
            return 404, _err(f"no such batch: {bid}")
        if b["status"] in ("validating", "in_progress"):
            b["status"] = "cancelling"
        return 200, _public(b)

    def _take(self, knob: str, n: int = 1) -> int:
        with self._lock:
            took = min(n, int(self.knobs[knob]))
            self.knobs[knob] -= took
            return took

    def _finish(self, b: dict) -> None:
        now = int(time.time())
        if self._take("fail_next_batches"):
            b.update(status="failed", failed_at=now, errors={"object": "list", "data": [
                {"code": "invalid_request", "message": "injected batch failure", "line": None}]})
            return
        lines = b["_lines"]
        expired = bool(self._take("expire_next_batches"))
        answer_n = int(self.knobs["expire_done"]) if expired else len(lines)
        out, err = [], []
        for i, line in enumerate(lines):
            cid = line.get("custom_id")
            if i >= answer_n:
                err.append({"id": "batch_req_" + uuid.uuid4().hex[:16], "custom_id": cid, "response": None,
                            "error": {"code": "batch_expired", "message": "expired before it ran"}})
                continue
            if self._take("drop_next_lines"):
                continue
            if self._take("fail_next_lines"):
                err.append({"id": "batch_req_" + uuid.uuid4().hex[:16], "custom_id": cid,
                            "response": {"status_code": 500, "request_id": uuid.uuid4().hex,
                                         "body": _err("injected line failure")}, "error": None})
                continue
            status, payload, _headers = self._chat(line.get("body") or {})
            row = {"id": "batch_req_" + uuid.uuid4().hex[:16], "custom_id": cid,
                   "response": {"status_code": status, "request_id": uuid.uuid4().hex,
                                "body": payload if isinstance(payload, dict) else {"raw": payload.decode()}},
                   "error": None}
            (out if status == 200 else err).append(row)
            if status == 200 and self.knobs["duplicate_output"]:
                out.append(row)
        b["request_counts"] = {"total": len(lines), "completed": len({r["custom_id"] for r in out}),
                               "failed": len(err)}
        if out:
            b["output_file_id"] = self._store(_jsonl(out), "batch_output", "output.jsonl")["id"]
        if err:
            b["error_file_id"] = self._store(_jsonl(err), "batch_output", "errors.jsonl")["id"]
        b["status"] = "expired" if expired else "completed"
        b["expired_at" if expired else "completed_at"] = now


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _public(b: dict) -> dict:
    return {k: v for k, v in b.items() if not k.startswith("_")}


def _err(message: str) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "code": "400", "param": None}}


def route(api: BatchAPI, method: str, path: str, headers, raw: bytes):
    """(status, payload) for a files / batches path, or None when the path is not one."""
    p = path.removeprefix("/v1")
    parts = [x for x in p.split("/") if x]
    if not parts or parts[0] not in ("files", "batches"):
        return None
    if parts[0] == "files":
        if method == "POST" and len(parts) == 1:
            return api.upload(headers.get("Content-Type", ""), raw)
        if method == "GET" and len(parts) in (2, 3):
            return api.file(parts[1], content=len(parts) == 3 and parts[2] == "content")
    else:
        if method == "POST" and len(parts) == 1:
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return 400, _err("invalid JSON body")
            return api.create(body)
        if method == "GET" and len(parts) == 2:
            return api.retrieve(parts[1])
        if method == "POST" and len(parts) == 3 and parts[2] == "cancel":
            return api.cancel(parts[1])
    return 404, _err("not found")
