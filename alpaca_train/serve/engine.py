"""Batched generation for the server: requests that arrive together are generated together.

One worker thread owns the model. It takes the waiting requests that share decoding settings (sampling or
greedy, temperature, top-p) as one left-padded batch and runs transformers' `generate` on it (with the
watermark processor when it is on). A stopping criterion, called once per decoding step with the whole
batch, reads each row's newest token: it streams the row's text to its request (an asyncio queue on the
server's loop) and ends the row on EOS, a stop string, its own `max_tokens`, its deadline or cancellation
(client gone, stop button, content filter). Rows of one batch may therefore ask for different lengths.

Each row's text is decoded incrementally (`IncrementalDetokenizer`: a few tokens per step, not the whole row
again), and text that could still become a stop string is held back until the next tokens settle it, so no
part of a stop string reaches the client.

This is "generate on a dynamic batch", not continuous batching: a request that arrives while a batch runs
waits for the next batch (at most `max_tokens` steps of the longest row).
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

# When a batch starts (a "max queue delay", as Triton calls it): when it is full; or once RETURN_WINDOW has
# passed since the last batch ended (its clients send their next requests then) and no request has arrived
# for GATHER_QUIET; and at the latest GATHER_MAX after the worker began gathering.
RETURN_WINDOW = 0.25
GATHER_QUIET = 0.02
GATHER_MAX = 0.5


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


@dataclass
class Event:
    kind: str  # "text" (delta), "done" (finish_reason), "error" (message)
    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int = 0
    pieces: int = 1  # text events merged into this one


@dataclass
class GenerationRequest:
    prompt_ids: list[int]
    max_tokens: int
    sampling: Sampling
    stop: tuple[str, ...]
    deadline: float  # time.monotonic() after which the answer is cut
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    token_ids: list[int] = field(default_factory=list)  # generated so far (EOS excluded)
    text: str = ""  # decoded text emitted so far
    finished: bool = False
    held: str = ""  # decoded after `text` and held back: it may be the start of a stop string
    detokenizer: Any = None  # the row's IncrementalDetokenizer, made by the worker

    def cancel(self) -> None:
        self.cancelled.set()

    def emit(self, event: Event) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)


class IncrementalDetokenizer:
    """The text of a growing list of token ids, one delta per new token, decoding a few tokens each time.

    As TGI and vLLM do: decode `ids[prefix:]` and `ids[prefix:read]`; what the first adds to the second is new
    text. `prefix` stays one step behind `read`, so a tokenizer that drops the leading space of the first token
    it decodes (SentencePiece/LLaMA) drops it from a token already emitted, and byte-level BPE (GPT-2) sees the
    bytes of a character split over tokens together. Text that ends in U+FFFD (a character whose UTF-8 bytes are
    still arriving) is held until it is complete, or until `flush` at the end. The deltas put together are the
    decode of all the ids (special tokens skipped, no clean-up of spaces).
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = self.read = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def add(self, token: int) -> str:
        """The text that `token` completes ("" while a character or a special token is pending)."""
        self.ids.append(token)
        return self._delta(final=False)

    def flush(self) -> str:
        """At the end: whatever is still held, an incomplete character's U+FFFD included."""
        return self._delta(final=True) if self.read < len(self.ids) else ""

    def _delta(self, final: bool) -> str:
        before = self._decode(self.ids[self.prefix:self.read]) if self.read > self.prefix else ""
        after = self._decode(self.ids[self.prefix:])
        if len(after) <= len(before) or (after.endswith("\ufffd") and not final):
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return after[len(before):]


def stop_prefix_length(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of `text` that is the start of a stop string (and not a whole one)."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


class _RowStreamer(StoppingCriteria):
    """Per-step bookkeeping for each row: stream its new text and say which rows are done."""

    def __init__(self, engine: BatchEngine, rows: list[GenerationRequest], prompt_len: int):
        self.engine, self.rows, self.prompt_len = engine, rows, prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: Any = None, **kwargs: Any) -> torch.BoolTensor:
        newest = input_ids[:, -1].tolist()
        done = []
        for row, token in zip(self.rows, newest):
            if not row.finished:
                self.engine.advance(row, int(token))
            done.append(row.finished)
        self.engine.flush()
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class BatchEngine:
    def __init__(self, model: Any, tokenizer: Any, *, max_batch_size: int = 16, watermarking_config: Any = None):
        self.model, self.tokenizer = model, tokenizer
        self.max_batch_size = max(1, max_batch_size)
        self.watermarking_config = watermarking_config
        self.eos_ids = self._eos_ids()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (self.eos_ids or [0])[0]
        self._waiting: deque[GenerationRequest] = deque()
        self._outbox: list[tuple[GenerationRequest, Event]] = []  # this step's events, delivered together
        self._wake = threading.Condition()
        self._closed = False
        self._last_arrival = 0.0
        self._batch_ended = 0.0
        self.batches = 0
        self.batch_rows = 0
        self.cancelled = 0  # rows ended early because their client left, pressed stop or was cut by the filter
        self._thread = threading.Thread(target=self._run, name="alpaca-serve-generate", daemon=True)
        self._thread.start()

    def _eos_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        if ids is None:
            ids = self.tokenizer.eos_token_id
        return [ids] if isinstance(ids, int) else list(ids or [])

    # ------------------------------------------------------------------ the server side

    def submit(self, request: GenerationRequest) -> None:
        with self._wake:
            if self._closed:
                raise RuntimeError("the generation worker has stopped")
            self._waiting.append(request)
            self._last_arrival = time.monotonic()
            self._wake.notify()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def close(self) -> None:
        with self._wake:
            self._closed = True
            for request in self._waiting:
                request.emit(Event("error", "the server is shutting down"))
            self._waiting.clear()
            self._wake.notify_all()

    # ------------------------------------------------------------------ the worker

    def _next_batch(self) -> list[GenerationRequest]:
        with self._wake:
            while not self._waiting and not self._closed:
                self._wake.wait()
            if self._closed:
                return []
        # Clients whose answers just ended send their next requests some milliseconds apart: without waiting
        # for them they would miss this batch and wait a whole one, and batches would stay split for good.
        started = time.monotonic()
        while len(self._waiting) < self.max_batch_size and not self._closed:
            now = time.monotonic()
            settled = now - self._batch_ended >= RETURN_WINDOW and now - self._last_arrival >= GATHER_QUIET
            if settled or now - started >= GATHER_MAX:
                break
            time.sleep(0.002)
        with self._wake:
            first = self._waiting[0]
            batch = [r for r in self._waiting if r.sampling == first.sampling][: self.max_batch_size]
            for request in batch:
                self._waiting.remove(request)
        return [r for r in batch if not self._drop_if_done(r)]

    @staticmethod
    def _drop_if_done(request: GenerationRequest) -> bool:
        if request.cancelled.is_set():
            request.emit(Event("done", finish_reason="cancelled"))
            return True
        if time.monotonic() > request.deadline:
            request.emit(Event("error", "timed out waiting for a free generation slot"))
            return True
        return False

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                if self._closed:
                    return
                continue
            try:
                self._generate(batch)
                self._batch_ended = time.monotonic()
            except Exception as error:  # noqa: BLE001 - one failed batch must not stop the server
                self.flush()
                for row in batch:
                    if not row.finished:
                        row.finished = True
                        row.emit(Event("error", f"generation failed: {type(error).__name__}"))

    def _generate(self, batch: list[GenerationRequest]) -> None:
        longest = max(len(r.prompt_ids) for r in batch)
        ids = torch.full((len(batch), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for i, row in enumerate(batch):  # left padding: every row's next token is at the same position
            ids[i, longest - len(row.prompt_ids):] = torch.tensor(row.prompt_ids, dtype=torch.long)
            mask[i, longest - len(row.prompt_ids):] = 1
        device = self.model.device
        sampling = batch[0].sampling
        kwargs: dict[str, Any] = {"max_new_tokens": max(r.max_tokens for r in batch), "pad_token_id": self.pad_id,
                                  "do_sample": not sampling.greedy}
        if not sampling.greedy:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        if self.watermarking_config is not None:
            kwargs["watermarking_config"] = self.watermarking_config
        self.batches += 1
        self.batch_rows += len(batch)
        with torch.inference_mode():
            self.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                stopping_criteria=StoppingCriteriaList([_RowStreamer(self, batch, longest)]),
                                **kwargs)
        for row in batch:  # rows the batch's length limit ended before their own checks did
            if not row.finished:
                self._end(row, "length")
        self.flush()

    def advance(self, row: GenerationRequest, token: int) -> None:
        """Row `row` has a new token: end it or stream the text it adds."""
        if row.cancelled.is_set():
            return self._finish(row, "cancelled")
        if token in self.eos_ids:
            return self._end(row, "stop")
        row.token_ids.append(token)
        if row.detokenizer is None:
            row.detokenizer = IncrementalDetokenizer(self.tokenizer)
        row.held += row.detokenizer.add(token)
        if self._release(row):
            return
        if len(row.token_ids) >= row.max_tokens or time.monotonic() > row.deadline:
            self._end(row, "length")

    def _release(self, row: GenerationRequest, final: bool = False) -> bool:
        """Send the held text that cannot be part of a stop string; True if a stop string ended the row.
        A new match starts in the held text: text already sent ends with no start of a stop string."""
        held = row.held
        cut = min((i for i in (held.find(s) for s in row.stop if s) if i >= 0), default=-1)
        if cut >= 0:
            self._send(row, held[:cut])
            row.held = ""
            self._finish(row, "stop")
            return True
        keep = 0 if final else stop_prefix_length(held, row.stop)
        if len(held) > keep:
            self._send(row, held[:len(held) - keep])
            row.held = held[len(held) - keep:]
        return False

    def _end(self, row: GenerationRequest, reason: str) -> None:
        """EOS or a length limit: no stop string can complete now, so the held text goes out (up to a stop
        string it may hold) with an incomplete character's U+FFFD, as the whole decode has it."""
        if row.detokenizer is not None:
            row.held += row.detokenizer.flush()
        if not self._release(row, final=True):
            self._finish(row, reason)

    def _send(self, row: GenerationRequest, delta: str) -> None:
        if delta:
            self._outbox.append((row, Event("text", delta)))
            row.text += delta

    def flush(self) -> None:
        """Hand this step's events to the server's loop in one wake-up per loop, not one per row."""
        if not self._outbox:
            return
        by_loop: dict[Any, list[tuple[GenerationRequest, Event]]] = {}
        for row, event in self._outbox:
            by_loop.setdefault(row.loop, []).append((row, event))
        self._outbox = []
        for loop, items in by_loop.items():
            loop.call_soon_threadsafe(_deliver, items)

    def _finish(self, row: GenerationRequest, reason: str) -> None:
        if reason == "cancelled":
            self.cancelled += 1
        row.finished = True
        self._outbox.append((row, Event("done", finish_reason=reason, completion_tokens=len(row.token_ids))))


def _deliver(items: list[tuple[GenerationRequest, Event]]) -> None:
    for row, event in items:
        row.queue.put_nowait(event)
