"""Teachers behind one small interface: `await teacher.complete(prompts, seed=...)` sends a group of prompts
(one, for an HTTP teacher; a fixed batch, for an in-process model) and gives one `Completion` each (text,
finish_reason, token usage). Failures raise `TeacherError` with a kind and whether a retry may help.

Specs: `openai:MODEL` (any OpenAI-compatible server via the openai SDK), `hf:PATH` (a local transformers
causal LM, in-process), `demo` (the bundled demo server, started by the run).

A prompt is anything with `text` (for completions endpoints and local models) and `messages()` (for chat).
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from alpaca_data.errors import UsageError, UserError, one_line, refuse_missing_model_path
from alpaca_data.generate.config import Decoding
from alpaca_data.generate.tokens import count_tokens
from alpaca_data.model_prompt import ALPACA, CHAT_TEMPLATE, prompt_style, render_chat
from alpaca_data.secrets import redact


class Prompt(Protocol):
    text: str

    def messages(self) -> list[dict[str, str]]: ...


@dataclass
class Completion:
    text: str
    finish_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str | None = None


class TeacherError(Exception):
    """kind: rate_limited | server_error | timeout | connection | malformed | client_error | fatal."""

    def __init__(self, kind: str, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(redact(message))
        self.kind = kind
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass
class TeacherInfo:
    spec: str
    kind: str  # openai | hf | demo
    model: str
    api: str  # chat | completions
    endpoint_host: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_teacher_spec(spec: str) -> tuple[str, str]:
    """'openai:gpt-4o-mini' -> ('openai', 'gpt-4o-mini'); 'hf:/models/x' -> ('hf', '/models/x'); 'demo'."""
    spec = spec.strip()
    if spec == "demo" or spec.startswith("demo:"):
        return "demo", spec.partition(":")[2] or "alpaca-demo-teacher"
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in ("openai", "hf") or not rest:
        raise UsageError(f"--teacher {spec!r}: expected openai:MODEL, hf:PATH or demo")
    return kind, rest


def _retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value) / divisor
        except ValueError:
            continue
    return None


def _host(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else None


def _short(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return redact(text)[:200]


def status_error(status: int, message: str, headers: Any = None) -> TeacherError:
    """The TeacherError for an HTTP status (a realtime response, or a batch line's)."""
    if status in (401, 403, 404):
        return TeacherError("fatal", f"HTTP {status}: {message}", retryable=False)
    if status == 429:
        return TeacherError("rate_limited", f"HTTP {status}: {message}", retryable=True, retry_after=_retry_after(headers))
    retryable = status >= 500 or status in (408, 409)
    return TeacherError("server_error" if retryable else "client_error", f"HTTP {status}: {message}",
                        retryable=retryable, retry_after=_retry_after(headers))


class OpenAITeacher:
    """Any OpenAI-compatible endpoint through `openai.AsyncOpenAI` (retries are the request runner's job)."""

    batch_size = 1

    def __init__(self, model: str, *, api: str = "chat", base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 120.0, decoding: Decoding | None = None, send_seed: bool = True,
                 spec: str | None = None, kind: str = "openai"):
        import os

        import openai

        self._openai = openai
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            if base_url is None:
                raise UsageError("OPENAI_API_KEY is not set (or pass --base-url for a local server)")
            api_key = "not-needed"  # local servers (vLLM, Ollama, llama.cpp, demo) ignore it
        self.client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)
        self.model, self.api, self.send_seed = model, api, send_seed
        self.decoding = decoding or Decoding()
        self.info = TeacherInfo(spec=spec or f"openai:{model}", kind=kind, model=model, api=api,
                                endpoint_host=_host(str(self.client.base_url)))

    async def complete(self, prompts: Sequence[Prompt], *, seed: int | None = None) -> list[Completion]:
        return list(await asyncio.gather(*(self._one(prompt, seed) for prompt in prompts)))

    def request_body(self, prompt: Prompt, seed: int | None) -> tuple[str, dict[str, Any]]:
        """The endpoint path and JSON body of one request: what realtime mode sends, and a batch line's body."""
        d = self.decoding
        body: dict[str, Any] = {"model": self.model}
        if self.api == "chat":
            body["messages"] = prompt.messages()
        else:
            body["prompt"] = prompt.text
        body.update(temperature=d.temperature, top_p=d.top_p, max_tokens=d.max_tokens, stop=list(d.stop) or None)
        if d.frequency_penalty:
            body["frequency_penalty"] = d.frequency_penalty
        if d.presence_penalty:
            body["presence_penalty"] = d.presence_penalty
        if seed is not None and self.send_seed:
            body["seed"] = seed
        return ("/v1/chat/completions" if self.api == "chat" else "/v1/completions"), body

    async def _one(self, prompt: Prompt, seed: int | None) -> Completion:
        _, body = self.request_body(prompt, seed)
        openai = self._openai
        try:
            if self.api == "chat":
                response = await self.client.chat.completions.create(**body)
            else:
                response = await self.client.completions.create(**body)
            return self._completion(response, prompt)
        except openai.RateLimitError as error:
            raise TeacherError("rate_limited", _short(error), retryable=True,
                               retry_after=_retry_after(error.response.headers)) from None
        except openai.APITimeoutError:
            raise TeacherError("timeout", "request timed out", retryable=True) from None
        except openai.APIConnectionError as error:
            raise TeacherError("connection", _short(error), retryable=True) from None
        except openai.APIStatusError as error:
            raise status_error(error.status_code, _short(error), error.response.headers) from None
        except (ValueError, TypeError, AttributeError, IndexError, KeyError, openai.APIResponseValidationError) as error:
            raise TeacherError("malformed", f"malformed response: {type(error).__name__}", retryable=True) from None

    def completion_from_body(self, body: Any, prompt: Prompt) -> Completion:
        """A batch line's response body read as realtime reads a response (TeacherError "malformed" if it is not
        one)."""
        from openai.types import Completion as TextCompletion
        from openai.types.chat import ChatCompletion

        try:
            response = (ChatCompletion if self.api == "chat" else TextCompletion).model_validate(body)
            return self._completion(response, prompt)
        except (ValueError, TypeError, AttributeError, IndexError, KeyError) as error:
            raise TeacherError("malformed", f"malformed response: {type(error).__name__}", retryable=True) from None

    @staticmethod
    def _completion(response: Any, prompt: Prompt) -> Completion:
        choice = response.choices[0]
        text = choice.message.content if hasattr(choice, "message") else choice.text
        if not isinstance(text, str):
            raise TypeError("no text in the response")
        usage = response.usage
        prompt_tokens = getattr(usage, "prompt_tokens", None) if usage else None
        completion_tokens = getattr(usage, "completion_tokens", None) if usage else None
        return Completion(text=text, finish_reason=choice.finish_reason,
                          prompt_tokens=int(prompt_tokens if prompt_tokens is not None else count_tokens(prompt.text)),
                          completion_tokens=int(completion_tokens if completion_tokens is not None else count_tokens(text)),
                          model=getattr(response, "model", None))

    async def aclose(self) -> None:
        await self.client.close()


class HFTeacher:
    """A local transformers causal LM, in-process. A call generates its group of prompts as one batch in a
    worker thread (one batch at a time: the model is not shared between threads), sampling with the group's
    seed, so the same group always gives the same answers."""

    def __init__(self, path: str, *, api: str = "completions", decoding: Decoding | None = None, batch_size: int = 1,
                 device: str | None = None, spec: str | None = None, prompt_format=None):
        self.path, self.api, self.batch_size, self.device = path, api, max(1, batch_size), device
        self.decoding = decoding or Decoding()
        self.prompt_format = prompt_format  # text -> the text the model sees (e.g. the Alpaca template)
        self._model = None
        self._tokenizer = None
        self._style = ALPACA
        self._lock = threading.Lock()
        self.info = TeacherInfo(spec=spec or f"hf:{path}", kind="hf", model=path, api=api, endpoint_host=None,
                                extra={"batch_size": self.batch_size})

    def load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoTokenizer

        from alpaca_data.model_loading import load_causal_lm, tokenizer_source

        refuse_missing_model_path(self.path, f"hf:{self.path}")
        try:  # a peft adapter folder is its base with the adapter merged in (alpaca_data.model_loading)
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_source(self.path, f"hf:{self.path}"))
        except (OSError, ValueError) as error:
            raise UserError(f"hf:{self.path}: cannot load model: {one_line(error)}") from None
        model = load_causal_lm(self.path, label=f"hf:{self.path}")
        tokenizer.padding_side = "left"
        self._style = prompt_style(self.path, tokenizer)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if self.device:
            model.to(self.device)
        model.eval()
        self._model, self._tokenizer = model, tokenizer

    def _render(self, prompt: Prompt) -> str:
        """The text the model sees (alpaca_data.model_prompt decides): the caller's format, else the model's chat
        template on the prompt's messages (chat API), else the prompt's plain text."""
        if self.prompt_format is not None:
            return self.prompt_format(prompt)
        if self._chat_templated:
            return render_chat(self._tokenizer, prompt.messages())
        return prompt.text

    @property
    def _chat_templated(self) -> bool:
        return self.prompt_format is None and self.api == "chat" and self._style == CHAT_TEMPLATE

    def generate(self, prompts: Sequence[Prompt], seed: int | None) -> list[Completion]:
        import torch

        with self._lock:
            self.load()
            model, tokenizer, d = self._model, self._tokenizer, self.decoding
            # a chat template writes its own special tokens: adding them again would double BOS on some models
            batch = tokenizer([self._render(p) for p in prompts], return_tensors="pt", padding=True,
                              add_special_tokens=not self._chat_templated)
            batch = {k: v.to(model.device) for k, v in batch.items()}
            sample = d.temperature > 0
            kwargs: dict[str, Any] = {"max_new_tokens": d.max_tokens, "do_sample": sample,
                                      "pad_token_id": tokenizer.pad_token_id}
            if any(d.stop):  # each row stops at its first stop string instead of running on to max_tokens
                kwargs.update(stop_strings=[s for s in d.stop if s], tokenizer=tokenizer)
            if sample:
                kwargs.update(temperature=d.temperature, top_p=d.top_p)
            with torch.random.fork_rng(devices=[]):  # the group's seed, without touching the caller's RNG
                if seed is not None:
                    torch.manual_seed(seed)
                with torch.no_grad():
                    output = model.generate(**batch, **kwargs)
        prompt_len = batch["input_ids"].shape[1]
        eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
        results = []
        for row, attention in zip(output, batch["attention_mask"]):
            new_tokens = row[prompt_len:]
            ended = eos is not None and bool((new_tokens == eos).any())
            if ended:
                new_tokens = new_tokens[: int((new_tokens == eos).nonzero()[0])]
            text = tokenizer.decode(new_tokens, skip_special_tokens=True)
            cut = min((text.find(s) for s in d.stop if s and s in text), default=-1)
            if cut >= 0:
                text, finish = text[:cut], "stop"
            elif ended or len(new_tokens) < d.max_tokens:
                finish = "stop"
            else:
                finish = "length"
            generated = int((new_tokens != pad).sum()) if pad is not None and pad != eos else len(new_tokens)
            results.append(Completion(text=text, finish_reason=finish, prompt_tokens=int(attention.sum()),
                                      completion_tokens=generated, model=self.path))
        return results

    async def complete(self, prompts: Sequence[Prompt], *, seed: int | None = None) -> list[Completion]:
        try:
            return await asyncio.to_thread(self.generate, list(prompts), seed)
        except UserError:
            raise
        except Exception as error:  # noqa: BLE001 - reported per request, not fatal to the run
            raise TeacherError("server_error", f"{type(error).__name__}: {error}"[:200], retryable=False) from None

    async def aclose(self) -> None:
        return None
