"""Teachers behind one small interface: `await teacher.complete(prompt, seed=...)` for one prompt and
`await teacher.complete_batch(prompts, seeds)` for several, each giving `Completion`s (text,
finish_reason, token usage). Failures raise `TeacherError` with a kind and whether a retry may help.

Specs: `openai:MODEL` (any OpenAI-compatible server via the openai SDK), `hf:PATH` (a local
transformers causal LM, in-process and batched in a worker thread), `demo` (the bundled demo server).
"""
from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from alpaca_data.errors import UsageError
from alpaca_data.generate.prompt import Prompt


@dataclass(frozen=True)
class Decoding:
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 3072
    stop: tuple[str, ...] = ("\n20", "20.", "20.")
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                "stop": list(self.stop), "frequency_penalty": self.frequency_penalty,
                "presence_penalty": self.presence_penalty}


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
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass
class TeacherInfo:
    spec: str
    kind: str           # openai | hf | demo
    model: str
    api: str            # chat | completions
    endpoint_host: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


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


class OpenAITeacher:
    """Any OpenAI-compatible endpoint through `openai.AsyncOpenAI` (retries are the engine's job)."""

    def __init__(self, model: str, *, api: str = "chat", base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 120.0, decoding: Decoding = Decoding(), send_seed: bool = True,
                 spec: str | None = None, kind: str = "openai"):
        import openai

        self._openai = openai
        if api not in ("chat", "completions"):
            raise UsageError(f"--api {api!r}: expected chat or completions")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            if base_url is None:
                raise UsageError("OPENAI_API_KEY is not set (or pass --base-url for a local server)")
            api_key = "not-needed"  # local servers (vLLM, Ollama, llama.cpp, demo) ignore it
        self.client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)
        self.model, self.api, self.decoding, self.send_seed = model, api, decoding, send_seed
        self.info = TeacherInfo(spec=spec or f"openai:{model}", kind=kind, model=model, api=api,
                                endpoint_host=_host(str(self.client.base_url)))

    async def complete(self, prompt: Prompt, *, seed: int | None = None) -> Completion:
        d = self.decoding
        kwargs: dict[str, Any] = {"model": self.model, "temperature": d.temperature, "top_p": d.top_p,
                                  "max_tokens": d.max_tokens, "stop": list(d.stop) or None}
        if d.frequency_penalty:
            kwargs["frequency_penalty"] = d.frequency_penalty
        if d.presence_penalty:
            kwargs["presence_penalty"] = d.presence_penalty
        if seed is not None and self.send_seed:
            kwargs["seed"] = seed
        openai = self._openai
        try:
            if self.api == "chat":
                response = await self.client.chat.completions.create(messages=prompt.messages(), **kwargs)
                choice = response.choices[0]
                text = choice.message.content
            else:
                response = await self.client.completions.create(prompt=prompt.text, **kwargs)
                choice = response.choices[0]
                text = choice.text
            if not isinstance(text, str):
                raise TypeError("no text in the response")
            usage = response.usage
        except openai.RateLimitError as error:
            raise TeacherError("rate_limited", _short(error), retryable=True,
                               retry_after=_retry_after(error.response.headers)) from None
        except openai.APITimeoutError:
            raise TeacherError("timeout", "request timed out", retryable=True) from None
        except openai.APIConnectionError as error:
            raise TeacherError("connection", _short(error), retryable=True) from None
        except openai.APIStatusError as error:
            status = error.status_code
            if status in (401, 403, 404):
                raise TeacherError("fatal", f"HTTP {status}: {_short(error)}", retryable=False) from None
            retryable = status >= 500 or status in (408, 409)
            raise TeacherError("server_error" if retryable else "client_error", f"HTTP {status}: {_short(error)}",
                               retryable=retryable, retry_after=_retry_after(error.response.headers)) from None
        except (ValueError, TypeError, AttributeError, IndexError, KeyError, openai.APIResponseValidationError) as error:
            raise TeacherError("malformed", f"malformed response: {type(error).__name__}", retryable=True) from None
        from alpaca_data.generate.demo_server import count_tokens

        prompt_tokens = getattr(usage, "prompt_tokens", None) if usage else None
        completion_tokens = getattr(usage, "completion_tokens", None) if usage else None
        return Completion(text=text, finish_reason=choice.finish_reason,
                          prompt_tokens=int(prompt_tokens if prompt_tokens is not None else count_tokens(prompt.text)),
                          completion_tokens=int(completion_tokens if completion_tokens is not None else count_tokens(text)),
                          model=getattr(response, "model", None))

    async def complete_batch(self, prompts: Sequence[Prompt], seeds: Sequence[int | None] | None = None) -> list[Completion]:
        seeds = list(seeds) if seeds is not None else [None] * len(prompts)
        return list(await asyncio.gather(*(self.complete(p, seed=s) for p, s in zip(prompts, seeds))))

    async def aclose(self) -> None:
        await self.client.close()


def _short(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]


class HFTeacher:
    """A local transformers causal LM. Concurrent `complete` calls are gathered into batches of up to
    `batch_size` and generated in a worker thread, so the event loop keeps running."""

    def __init__(self, path: str, *, api: str = "completions", decoding: Decoding = Decoding(), batch_size: int = 8,
                 device: str | None = None, spec: str | None = None):
        self.path, self.api, self.decoding, self.batch_size, self.device = path, api, decoding, max(1, batch_size), device
        self._model = None
        self._tokenizer = None
        self._pending: list[tuple[Prompt, int | None, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None
        self.info = TeacherInfo(spec=spec or f"hf:{path}", kind="hf", model=path, api=api, endpoint_host=None,
                                extra={"batch_size": self.batch_size})

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from alpaca_data.errors import UserError, refuse_missing_model_path

        refuse_missing_model_path(self.path, f"hf:{self.path}")
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.path)
            model = AutoModelForCausalLM.from_pretrained(self.path)
        except (OSError, ValueError) as error:
            raise UserError(f"hf:{self.path}: cannot load model: {str(error).splitlines()[0]}") from None
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if self.device:
            model.to(self.device)
        model.eval()
        self._model, self._tokenizer = model, tokenizer

    def _render(self, prompt: Prompt) -> str:
        tokenizer = self._tokenizer
        if self.api == "chat" and getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(prompt.messages(), tokenize=False, add_generation_prompt=True)
        return prompt.text

    def _generate(self, prompts: list[Prompt], seed: int | None) -> list[Completion]:
        import torch

        self._load()
        model, tokenizer, d = self._model, self._tokenizer, self.decoding
        texts = [self._render(p) for p in prompts]
        batch = tokenizer(texts, return_tensors="pt", padding=True)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        if seed is not None:
            torch.manual_seed(seed)
        sample = d.temperature > 0
        kwargs: dict[str, Any] = {"max_new_tokens": d.max_tokens, "do_sample": sample,
                                  "pad_token_id": tokenizer.pad_token_id}
        if sample:
            kwargs.update(temperature=d.temperature, top_p=d.top_p)
        with torch.no_grad():
            output = model.generate(**batch, **kwargs)
        prompt_len = batch["input_ids"].shape[1]
        results = []
        for row, attention in zip(output, batch["attention_mask"]):
            new_tokens = row[prompt_len:]
            eos = tokenizer.eos_token_id
            ended = eos is not None and bool((new_tokens == eos).any())
            text = tokenizer.decode(new_tokens, skip_special_tokens=True)
            cut = min((text.find(s) for s in d.stop if s and s in text), default=-1)
            if cut >= 0:
                text, finish = text[:cut], "stop"
            elif ended or len(new_tokens) < d.max_tokens:
                finish = "stop"
            else:
                finish = "length"
            pad = tokenizer.pad_token_id
            generated = int((new_tokens != pad).sum()) if pad is not None and pad != eos else len(new_tokens)
            results.append(Completion(text=text, finish_reason=finish, prompt_tokens=int(attention.sum()),
                                      completion_tokens=generated, model=self.path))
        return results

    async def complete(self, prompt: Prompt, *, seed: int | None = None) -> Completion:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((prompt, seed, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.sleep(0.01)  # let concurrent callers join the batch
            batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size:]
            try:
                results = await asyncio.to_thread(self._generate, [p for p, _, _ in batch], batch[0][1])
            except Exception as error:  # noqa: BLE001 - reported per request, not fatal to the run
                from alpaca_data.errors import UserError

                for _, _, future in batch:
                    if not future.done():
                        if isinstance(error, UserError):
                            future.set_exception(error)
                        else:
                            future.set_exception(TeacherError("server_error", f"{type(error).__name__}: {error}"[:200],
                                                              retryable=False))
                continue
            for (_, _, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)

    async def complete_batch(self, prompts: Sequence[Prompt], seeds: Sequence[int | None] | None = None) -> list[Completion]:
        seeds = list(seeds) if seeds is not None else [None] * len(prompts)
        return list(await asyncio.gather(*(self.complete(p, seed=s) for p, s in zip(prompts, seeds))))

    async def aclose(self) -> None:
        return None


def parse_teacher_spec(spec: str) -> tuple[str, str]:
    """'openai:gpt-4o-mini' -> ('openai', 'gpt-4o-mini'); 'hf:/models/x' -> ('hf', '/models/x'); 'demo'."""
    spec = spec.strip()
    if spec == "demo" or spec.startswith("demo:"):
        return "demo", spec.partition(":")[2] or "alpaca-demo-teacher"
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in ("openai", "hf") or not rest:
        raise UsageError(f"--teacher {spec!r}: expected openai:MODEL, hf:PATH or demo")
    return kind, rest


def describe_decoding(decoding: Decoding) -> str:
    return json.dumps(decoding.as_dict(), sort_keys=True)
