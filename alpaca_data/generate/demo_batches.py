"""The OpenAI Batch API, served offline by the demo teacher and the demo judge (so batch mode is tested without a
network): `POST /v1/files` (multipart, purpose=batch), `GET /v1/files/{id}` and `/content`, `POST /v1/batches`,
`GET /v1/batches/{id}`, `GET /v1/batches` (list, with `after` and `limit`), `POST /v1/batches/{id}/cancel`.

A batch completes `batch_seconds` after it was created: its lines are answered then, one by one, by the same
function that answers a realtime request (faults included), so a batch gives the answers realtime gives. A line
whose answer is not a 200 goes to the batch's error file. `batch_faults` makes the first batches end badly, in
creation order: "expired" (the first half of the lines answered, the rest expired), "failed" (nothing run).
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

# (url, body) -> (HTTP status, the JSON answer): how the server answers one request line
Answer = Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]]]


def parse_multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename, bytes)."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    fields: dict[str, tuple[str | None, bytes]] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields


class BatchService:
    """Files and batches in memory; thread-safe. `answer` answers one line as a realtime request would be."""

    def __init__(self, answer: Answer, batch_seconds: float = 0.0, batch_faults: tuple[str, ...] = ()):
        self.answer, self.batch_seconds, self.batch_faults = answer, batch_seconds, tuple(batch_faults)
        self._lock = threading.Lock()
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}  # in creation order
        self.batches_created = 0
        self.lines_answered = 0

    # ------------------------------------------------------------------ files
    def add_file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        with self._lock:
            file_id = f"file-demo{len(self.files) + 1:06d}"
            obj = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                   "filename": filename, "purpose": purpose, "status": "processed"}
            self.files[file_id], self.contents[file_id] = obj, data
            return obj

    # ------------------------------------------------------------------ batches
    def create(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        file_id = request.get("input_file_id")
        if file_id not in self.contents:
            return 400, _error(f"input_file_id {file_id!r}: no such file", "invalid_request_error")
        with self._lock:
            self.batches_created += 1
            number = self.batches_created
            now = time.time()
            batch = {"id": f"batch_demo{number:06d}", "object": "batch", "endpoint": request.get("endpoint"),
                     "input_file_id": file_id, "completion_window": request.get("completion_window", "24h"),
                     "status": "in_progress", "created_at": int(now), "in_progress_at": int(now),
                     "output_file_id": None, "error_file_id": None, "errors": None,
                     "metadata": request.get("metadata") or None,
                     "request_counts": {"total": self._count_lines(file_id), "completed": 0, "failed": 0}}
            batch["_due"] = now + self.batch_seconds
            batch["_fault"] = self.batch_faults[number - 1] if number <= len(self.batch_faults) else None
            self.batches[batch["id"]] = batch
        return 200, _public(batch)

    def _count_lines(self, file_id: str) -> int:
        return sum(1 for line in self.contents[file_id].splitlines() if line.strip())

    def retrieve(self, batch_id: str) -> dict[str, Any] | None:
        with self._lock:
            batch = self.batches.get(batch_id)
        if batch is None:
            return None
        self._settle(batch)
        return _public(batch)

    def cancel(self, batch_id: str) -> dict[str, Any] | None:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                return None
            if batch["status"] in ("validating", "in_progress"):
                batch.update(status="cancelled", cancelled_at=int(time.time()))
            return _public(batch)

    def list(self, after: str | None, limit: int) -> dict[str, Any]:
        """Newest first, as the OpenAI API lists them."""
        with self._lock:
            ids = list(reversed(self.batches))
        start = ids.index(after) + 1 if after in ids else 0
        page = ids[start:start + limit]
        data = [self.retrieve(batch_id) for batch_id in page]
        return {"object": "list", "data": data, "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None, "has_more": start + limit < len(ids)}

    def _settle(self, batch: dict[str, Any]) -> None:
        """Answer a batch's lines once it is due (under the batch's own lock: once)."""
        with self._lock:
            if batch["status"] != "in_progress" or time.time() < batch["_due"]:
                return
            batch["status"] = "finalizing"
            lines = [json.loads(line) for line in self.contents[batch["input_file_id"]].splitlines() if line.strip()]
        fault = batch["_fault"]
        if fault == "failed":
            with self._lock:
                batch.update(status="failed", failed_at=int(time.time()),
                             errors={"object": "list", "data": [{"code": "demo_fault", "message": "batch failed "
                                                                 "(demo fault)", "line": None, "param": None}]})
            return
        answered = len(lines) // 2 if fault == "expired" else len(lines)
        out, err = [], []
        for number, line in enumerate(lines):
            custom_id = line.get("custom_id")
            if number >= answered:
                err.append({"id": f"batch_req_{number}", "custom_id": custom_id, "response": None,
                            "error": {"code": "batch_expired", "message": "not run before the batch expired"}})
                continue
            status, body = self.answer(str(line.get("url", "")), line.get("body") or {})
            with self._lock:
                self.lines_answered += 1
            response = {"status_code": status, "request_id": f"req_{number}", "body": body}
            (out if status == 200 else err).append({"id": f"batch_req_{number}", "custom_id": custom_id,
                                                    "response": response, "error": None})
        output_id = self._result_file(out, batch["id"], "output")
        error_id = self._result_file(err, batch["id"], "error")
        with self._lock:
            batch.update(status="expired" if fault == "expired" else "completed", output_file_id=output_id,
                         error_file_id=error_id, request_counts={"total": len(lines), "completed": len(out),
                                                                 "failed": len(err)})
            batch["expired_at" if fault == "expired" else "completed_at"] = int(time.time())

    def _result_file(self, rows: list[dict[str, Any]], batch_id: str, kind: str) -> str | None:
        if not rows:
            return None
        data = "".join(json.dumps(row) + "\n" for row in rows).encode()
        return self.add_file(data, f"{batch_id}_{kind}.jsonl", f"batch_{kind}")["id"]

    # ------------------------------------------------------------------ HTTP
    def handle_get(self, path: str, query: dict[str, str]) -> tuple[int, Any] | None:
        """The answer to a GET on a Batch API path (bytes for file content), or None for another path."""
        parts = [p for p in path.split("/") if p and p != "v1"]
        if not parts or parts[0] not in ("files", "batches"):
            return None
        if parts == ["batches"]:
            return 200, self.list(query.get("after"), max(1, min(int(query.get("limit") or 20), 100)))
        if parts[0] == "batches" and len(parts) == 2:
            found = self.retrieve(parts[1])
            return (200, found) if found else (404, _error(f"no batch {parts[1]}", "not_found"))
        if parts[0] == "files" and len(parts) in (2, 3) and parts[1] in self.files:
            if len(parts) == 3 and parts[2] == "content":
                return 200, self.contents[parts[1]]
            if len(parts) == 2:
                return 200, self.files[parts[1]]
        return 404, _error(f"no route {path}", "not_found")

    def handle_post(self, path: str, content_type: str, raw: bytes) -> tuple[int, Any] | None:
        parts = [p for p in path.split("/") if p and p != "v1"]
        if not parts or parts[0] not in ("files", "batches"):
            return None
        if parts == ["files"]:
            fields = parse_multipart(content_type, raw)
            if "file" not in fields:
                return 400, _error("a multipart field 'file' is required", "invalid_request_error")
            purpose = fields.get("purpose", (None, b"batch"))[1].decode()
            filename = fields["file"][0] or "upload.jsonl"
            return 200, self.add_file(fields["file"][1], filename, purpose)
        if parts == ["batches"]:
            try:
                request = json.loads(raw or b"{}")
                assert isinstance(request, dict)
            except (ValueError, AssertionError):
                return 400, _error("request body is not a JSON object", "invalid_request_error")
            return self.create(request)
        if parts[0] == "batches" and len(parts) == 3 and parts[2] == "cancel":
            found = self.cancel(parts[1])
            return (200, found) if found else (404, _error(f"no batch {parts[1]}", "not_found"))
        return 404, _error(f"no route {path}", "not_found")

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"batches_created": self.batches_created, "batch_lines_answered": self.lines_answered,
                    "batches_cancelled": sum(1 for b in self.batches.values() if b["status"] == "cancelled")}


def _public(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind}}
