"""Parse and check the bodies of `/v1/completions` and `/v1/chat/completions` (OpenAI's fields).

400: not JSON, a missing field or a feature this server does not offer; 422: a value out of range.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alpaca_train.serve.errors import APIError
from alpaca_train.serve.prompting import PromptError, split_chat

GREEDY_BELOW = 1e-3  # a temperature under this decodes greedily: the same answer, and no overflow dividing by it
UNSUPPORTED = ("tools", "functions", "logprobs", "top_logprobs", "response_format", "suffix", "echo", "best_of")


@dataclass(frozen=True)
class Limits:
    max_prompt_tokens: int
    max_tokens: int  # the most a request may ask for
    default_max_tokens: int
    max_concurrent: int
    request_timeout: float


@dataclass
class Parsed:
    model: str
    prompt: str  # the text the model sees
    moderated_text: str  # what the user wrote (checked by the content filter)
    instruction: str
    input: str
    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool


def _number(body: dict, name: str, default: float, low: float, high: float, *, integer: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise APIError(400, f"{name}: expected {'an integer' if integer else 'a number'}", param=name)
    if not low <= value <= high:
        raise APIError(422, f"{name} {value} is out of range [{low}, {high}]", param=name)
    return value


def _stop(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 4:
        raise APIError(400, "stop: expected a string or a list of up to 4 strings", param="stop")
    return tuple(s for s in stop if s)


def _temperature(body: dict) -> float:
    temperature = float(_number(body, "temperature", 1.0, 0.0, 2.0))
    return 0.0 if temperature < GREEDY_BELOW else temperature


def parse(body: Any, *, chat: bool, limits: Limits, render) -> Parsed:
    """`render(messages)` gives the text the checkpoint sees for a chat (its prompt template)."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(400, "model: a model name is required (see GET /v1/models)", param="model")
    for name in UNSUPPORTED:
        if body.get(name) not in (None, False, [], 0):
            raise APIError(400, f"{name}: not supported by this server", param=name)
    if body.get("n", 1) != 1:
        raise APIError(400, "n: only n = 1 is supported", param="n")
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise APIError(400, "messages: expected a list of message objects", param="messages")
        try:
            instruction, input_text = split_chat(messages)
        except PromptError as error:
            raise APIError(400, str(error), param="messages") from None
        prompt, moderated = render(messages), "\n".join(filter(None, (input_text, instruction)))
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise APIError(400, "prompt: expected a string (one prompt per request)", param="prompt")
        instruction, input_text, moderated = prompt, "", prompt
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    body = {**body, "max_tokens": max_tokens}
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise APIError(400, "stream_options: expected an object", param="stream_options")
    return Parsed(model=model, prompt=prompt, moderated_text=moderated, instruction=instruction, input=input_text,
                  max_tokens=_number(body, "max_tokens", limits.default_max_tokens, 1, limits.max_tokens, integer=True),
                  temperature=_temperature(body),
                  top_p=float(_number(body, "top_p", 1.0, 1e-9, 1.0)), stop=_stop(body),
                  stream=bool(body.get("stream", False)), include_usage=bool(stream_options.get("include_usage")))
