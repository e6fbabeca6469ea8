"""An answer as it grows, released to the client only once the content filter has passed it.

Text arrives from the generation worker a token at a time. With a content filter, it is held back until the
answer so far has been checked (every `CHECK_EVERY` new pieces, and once at the end), so a flagged answer
is cut before its flagged part reaches the user; tokens keep arriving while a check runs, so a slow filter
means fewer, larger checks rather than a slower model. Without a filter, text is released at once.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from alpaca_train.serve.engine import Event, GenerationRequest

CHECK_EVERY = 8


@dataclass
class Outcome:
    text: str  # what the client received
    finish_reason: str  # stop | length | content_filter | cancelled
    completion_tokens: int
    refusal: dict[str, Any] | None = None  # {"category", "message", "moderation"} when the filter cut it


class GenerationFailed(Exception):
    pass


async def _merged_events(queue: asyncio.Queue) -> AsyncIterator[Event]:
    """Events in order; text pieces already waiting are merged into one, so a busy server (many streams, a
    slow client) sends fewer, larger chunks instead of falling behind one token at a time."""
    while True:
        event = await queue.get()
        while event.kind == "text" and not queue.empty():
            following = queue.get_nowait()
            if following.kind != "text":
                yield event
                event = following
                break
            event = Event("text", event.text + following.text, pieces=event.pieces + following.pieces)
        yield event


async def released_text(request: GenerationRequest, moderator: Any, refusal_message) -> AsyncIterator[Any]:
    """Yields text deltas (str) the client may see, then one `Outcome`. Cancels generation if abandoned."""
    approved, pending, pieces = "", "", 0
    filtering = moderator is not None and getattr(moderator, "name", "none") != "none"
    try:
        async for event in _merged_events(request.queue):
            if event.kind == "error":
                raise GenerationFailed(event.text)
            if event.kind == "text":
                pending += event.text
                pieces += event.pieces
                if not filtering:
                    approved += pending
                    yield pending
                    pending = ""
                    continue
                if pieces < CHECK_EVERY:
                    continue
            verdict = await moderator.check(approved + pending) if filtering and pending else None
            if verdict is not None and verdict.flagged:
                request.cancel()
                yield Outcome(approved, "content_filter", len(request.token_ids),
                              {"category": verdict.category, "message": refusal_message(verdict, "answer"),
                               "moderation": verdict.as_dict()})
                return
            if pending:
                approved += pending
                yield pending
                pending, pieces = "", 0
            if event.kind == "done":
                yield Outcome(approved, event.finish_reason or "stop", event.completion_tokens)
                return
    finally:
        request.cancel()  # client gone, filter cut, or done: the worker drops the row at its next step
