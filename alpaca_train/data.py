"""Training data: where records come from, how they become token ids, and how ids become batches.

Sources (`load_source`): a local JSON array / JSONL / Parquet file, a store ref (`alpaca@v1`, `alpaca@main`,
`alpaca@<id prefix>`), or a Hub dataset `user/name@rev`, pulled into the store first (`load_hub_dataset`).

Tokenisation (`tokenize_records`): the prompt and the response are tokenised *separately*, each without
special tokens, and the ids are concatenated: `[prefix specials] + prompt_ids + response_ids + [eos]`.
The prompt/response boundary is therefore known exactly by construction; it can never disagree with
the label mask the way "tokenise prompt, tokenise prompt+response, mask len(prompt)" can when BPE merges
across the boundary. Labels are -100 on the prompt (and on padding), the response ids + EOS are trained.

Truncation to `max_length` keeps the response where it can: the template text is never cut; the
instruction/input text is shortened from the middle (longest segment first, keeping its head and tail)
down to at least `max_length // 4` tokens of user content; only then is the response cut on the right
(losing its EOS). An example left with no response token is dropped and counted.

The result is cached on disk (npz) per (revision id, tokenizer fingerprint, template version,
truncation version, max length).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alpaca_data.durable import atomic_file
from alpaca_data.errors import UserError
from alpaca_data.records import KNOWN_ALIASES, content_hash
from alpaca_train.prompts import TEMPLATE_VERSION, prompt_segments

TRUNCATION_VERSION = "middle-out-v1"
IGNORE_INDEX = -100


# --------------------------------------------------------------------------------------------- sources
@dataclass
class DataSource:
    ref: str
    kind: str  # "store" | "file" | "hub"
    dataset: str
    revision_id: str
    manifest_hash: str | None
    records: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)

    def lineage(self) -> dict[str, Any]:
        return {"ref": self.ref, "kind": self.kind, "dataset": self.dataset, "revision_id": self.revision_id,
                "manifest_hash": self.manifest_hash, "num_records": len(self.records), **self.extra}


_HUB_REF = re.compile(r"\A[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?\Z")


def load_hub_dataset(repo_id: str, revision: str | None, store_path=None) -> DataSource:
    """`user/name@rev`: pulled into the local store first (verified against its manifest when it was
    published by alpaca-kit), so the checkpoint's lineage names a store revision and the Hub commit."""
    from alpaca_data.hub.pull import pull
    from alpaca_data.store import Store

    store = Store.open(store_path)
    pulled = pull(f"{repo_id}@{revision or 'main'}", store=store)
    manifest = pulled.result.manifest
    return DataSource(ref=f"{repo_id}@{revision or 'main'}", kind="hub", dataset=manifest.dataset,
                      revision_id=manifest.id, manifest_hash=store.manifest_hash(manifest),
                      records=normalise_records(store.read_records(manifest), repo_id),
                      extra={"hub": {"repo": repo_id, "revision": revision or "main", "commit": pulled.commit,
                                     "verified": pulled.verified}, "store": str(store.root)})


def load_source(ref: str, store_path: str | os.PathLike | None = None, option: str = "--data") -> DataSource:
    """Resolve `--data REF` (or `--val-data`, named in errors): an existing local file wins, then
    `user/name@rev` (Hub), then a store ref."""
    path = Path(ref).expanduser()
    if path.is_file():
        return _load_file(path, ref)
    if path.suffix.lower() in {".json", ".jsonl", ".parquet"} or ref.startswith((".", "/", "~")):
        raise UserError(f"{option} {ref}: no such file")
    if _HUB_REF.match(ref):
        repo, _, rev = ref.partition("@")
        return load_hub_dataset(repo, rev or None, store_path)
    return _load_store(ref, store_path)


def _load_store(ref: str, store_path) -> DataSource:
    from alpaca_data.store import Store

    store = Store.open(store_path, create=False)
    manifest = store.resolve(ref)
    records = normalise_records(store.read_records(manifest), ref)
    return DataSource(ref=ref, kind="store", dataset=manifest.dataset, revision_id=manifest.id,
                      manifest_hash=store.manifest_hash(manifest), records=records,
                      extra={"store": str(getattr(store, "root", store_path or ""))})


def _load_file(path: Path, ref: str) -> DataSource:
    """A local JSON/JSONL/Parquet file, checked by the same validator as `alpaca-data validate`."""
    from alpaca_data.validate import load_valid_records

    report, valid = load_valid_records(str(path), dict(KNOWN_ALIASES))
    if report.problems:
        more = f" (and {report.problem_count - 1} more problems; see `alpaca-data validate`)" if report.problem_count > 1 else ""
        raise UserError(f"{report.problems[0]}{more}")
    records = normalise_records(valid, str(path))
    return DataSource(ref=ref, kind="file", dataset=path.stem, revision_id=content_hash(valid),
                      manifest_hash=None, records=records,
                      extra={"path": str(path.resolve()), "file_sha256": report.sha256})


def normalise_records(values: Iterable[Any], where: str) -> list[dict[str, str]]:
    """Core fields only, as strings; `response` is accepted for `output` (a known schema variant)."""
    out = []
    for number, value in enumerate(values, 1):
        if not isinstance(value, dict):
            raise UserError(f"{where}: record {number}: expected an object")
        record = dict(value)
        for alias, target in KNOWN_ALIASES.items():
            if target not in record and alias in record:
                record[target] = record[alias]
        for name in ("instruction", "output"):
            if not isinstance(record.get(name), str):
                raise UserError(f"{where}: record {number}: {name}: missing or not a string")
        input_text = record.get("input")
        if input_text is None:
            input_text = ""
        if not isinstance(input_text, str):
            raise UserError(f"{where}: record {number}: input: not a string")
        out.append({"instruction": record["instruction"], "input": input_text, "output": record["output"]})
    if not out:
        raise UserError(f"{where}: no records")
    return out


# -------------------------------------------------------------------------------------- tokenisation
@dataclass
class TokenizedData:
    """Examples as one flat id array; example i is ids[offsets[i]:offsets[i+1]], its first
    prompt_lens[i] ids are prompt (label -100), the rest response (+ EOS unless truncated)."""

    ids: np.ndarray  # int32, flat
    offsets: np.ndarray  # int64, n + 1
    prompt_lens: np.ndarray  # int32, n
    source_index: np.ndarray  # int32, n: index of the record each example came from
    stats: dict[str, Any]
    cache_path: str | None = None
    cache_hit: bool = False

    def __len__(self) -> int:
        return len(self.prompt_lens)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def response_lens(self) -> np.ndarray:
        return self.lengths - self.prompt_lens

    def example(self, i: int) -> tuple[np.ndarray, int]:
        return self.ids[self.offsets[i]:self.offsets[i + 1]], int(self.prompt_lens[i])

    def examples(self, indices: Iterable[int]) -> list[tuple[np.ndarray, int]]:
        return [self.example(int(i)) for i in indices]


def special_prefix(tokenizer) -> list[int]:
    """The ids the tokenizer puts *before* text with add_special_tokens=True (e.g. LLaMA's BOS).
    Suffix specials (some tokenizers append EOS) are ignored: EOS is appended to the response here."""
    probe = "a"
    with_sp = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    for start in range(len(with_sp) - len(plain) + 1):
        if with_sp[start:start + len(plain)] == plain:
            return with_sp[:start]
    return []


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of everything that decides the ids: vocabulary/merges/normaliser, specials, class."""
    digest = hashlib.sha256()
    digest.update(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    digest.update(json.dumps({"eos": tokenizer.eos_token_id, "prefix": special_prefix(tokenizer),
                              "specials": sorted(map(str, tokenizer.all_special_tokens))}).encode())
    return digest.hexdigest()[:16]


def _prompt_ids_and_cut_masks(tokenizer, records: Sequence[dict], batch_size: int):
    """Prompt ids per record and, per id, whether it lies inside instruction/input text."""
    segs = [prompt_segments(r["instruction"], r["input"]) for r in records]
    texts = ["".join(s.text for s in seg) for seg in segs]
    ids_out: list[list[int]] = []
    cut_out: list[list[bool]] = []
    try:
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], add_special_tokens=False,
                            return_offsets_mapping=True)
            for k, (ids, offs) in enumerate(zip(enc["input_ids"], enc["offset_mapping"])):
                spans, pos = [], 0
                for seg in segs[start + k]:
                    if seg.cuttable:
                        spans.append((pos, pos + len(seg.text)))
                    pos += len(seg.text)
                ids_out.append(list(ids))
                cut_out.append([any(a <= s and e <= b for a, b in spans) for s, e in offs])
        return ids_out, cut_out
    except (NotImplementedError, TypeError, KeyError, ValueError):
        pass
    # Slow tokenizers have no offsets: tokenise the segments separately (batched per segment slot).
    ids_out, cut_out = [[] for _ in records], [[] for _ in records]
    width = max(len(s) for s in segs)
    for slot in range(width):
        rows = [i for i, s in enumerate(segs) if len(s) > slot]
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            enc = tokenizer([segs[i][slot].text for i in chunk], add_special_tokens=False)["input_ids"]
            for i, ids in zip(chunk, enc):
                ids_out[i].extend(ids)
                cut_out[i].extend([segs[i][slot].cuttable] * len(ids))
    return ids_out, cut_out


def _shrink_middle(runs: list[list[int]], remove: int) -> list[list[int]]:
    """Remove `remove` positions from the runs: longest run first (water-filling), each from its middle."""
    keep = [len(r) for r in runs]
    while remove > 0:
        longest = max(keep)
        second = max([k for k in keep if k < longest], default=0)
        tops = [i for i, k in enumerate(keep) if k == longest]
        step = min(remove, (longest - second) * len(tops))
        per, extra = divmod(step, len(tops))
        for j, i in enumerate(tops):
            keep[i] -= per + (1 if j < extra else 0)
        remove -= step
    out = []
    for run, k in zip(runs, keep):
        head = (k + 1) // 2
        out.append(run[:head] + run[len(run) - (k - head):] if k < len(run) else run)
    return out


def fit_example(prompt: list[int], cuttable: list[bool], response: list[int], max_length: int,
                prefix: Sequence[int] = ()) -> tuple[list[int], list[int], str]:
    """Truncate one example to max_length. Returns (prompt_ids, response_ids, status) where status is
    "ok", "prompt_truncated", "response_truncated" or "dropped" (no response token left)."""
    prompt = list(prefix) + list(prompt)
    cuttable = [False] * len(prefix) + list(cuttable)
    if len(prompt) + len(response) <= max_length:
        return prompt, list(response), "ok"
    n_cut = sum(cuttable)
    fixed = len(prompt) - n_cut
    content_min = min(n_cut, max_length // 4)
    resp_keep = min(len(response), max_length - fixed - content_min)
    if resp_keep <= 0:
        return prompt, [], "dropped"
    content_keep = min(n_cut, max_length - fixed - resp_keep)
    # group cuttable positions into contiguous runs (instruction, input) and shrink them
    runs: list[list[int]] = []
    prev = False
    for pos, c in enumerate(cuttable):
        if c:
            if not prev:
                runs.append([])
            runs[-1].append(pos)
        prev = c
    kept_positions = {p for run in _shrink_middle(runs, n_cut - content_keep) for p in run}
    new_prompt = [t for pos, t in enumerate(prompt) if not cuttable[pos] or pos in kept_positions]
    status = "response_truncated" if resp_keep < len(response) else "prompt_truncated"
    return new_prompt, list(response[:resp_keep]), status


def tokenize_records(records: Sequence[dict], tokenizer, max_length: int, batch_size: int = 512) -> TokenizedData:
    if tokenizer.eos_token_id is None:
        raise UserError("the tokenizer has no EOS token; Alpaca training appends EOS to every response")
    prefix = special_prefix(tokenizer)
    prompts, cut_masks = _prompt_ids_and_cut_masks(tokenizer, records, batch_size)
    responses: list[list[int]] = []
    outputs = [r["output"] for r in records]
    for start in range(0, len(outputs), batch_size):
        responses.extend(tokenizer(outputs[start:start + batch_size], add_special_tokens=False)["input_ids"])
    eos = tokenizer.eos_token_id
    flat: list[int] = []
    offsets = [0]
    prompt_lens: list[int] = []
    source: list[int] = []
    counts = {"ok": 0, "prompt_truncated": 0, "response_truncated": 0, "dropped": 0}
    for i, (p, cut, r) in enumerate(zip(prompts, cut_masks, responses)):
        p2, r2, status = fit_example(p, cut, list(r) + [eos], max_length, prefix)
        counts[status] += 1
        if status == "dropped":
            continue
        flat.extend(p2)
        flat.extend(r2)
        offsets.append(len(flat))
        prompt_lens.append(len(p2))
        source.append(i)
    stats = {"records": len(records), "examples": len(prompt_lens), "dropped": counts["dropped"],
             "prompt_truncated": counts["prompt_truncated"], "response_truncated": counts["response_truncated"],
             "tokens": len(flat), "response_tokens": len(flat) - int(sum(prompt_lens)), "max_length": max_length}
    if not prompt_lens:
        raise UserError(f"no example fits max_length={max_length} with at least one response token")
    return TokenizedData(ids=np.asarray(flat, dtype=np.int32), offsets=np.asarray(offsets, dtype=np.int64),
                         prompt_lens=np.asarray(prompt_lens, dtype=np.int32),
                         source_index=np.asarray(source, dtype=np.int32), stats=stats)


def default_cache_dir() -> Path:
    env = os.environ.get("ALPACA_TRAIN_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "alpaca-train" / "tokenized"


def cache_key(revision_id: str, tok_fingerprint: str, max_length: int) -> str:
    payload = json.dumps({"revision": revision_id, "tokenizer": tok_fingerprint, "template": TEMPLATE_VERSION,
                          "truncation": TRUNCATION_VERSION, "max_length": max_length}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def load_or_tokenize(records: Sequence[dict], revision_id: str, tokenizer, max_length: int,
                     cache_dir: str | os.PathLike | None = None, write: bool = True) -> TokenizedData:
    """Tokenise with an on-disk cache. `cache_dir=False`-ish (empty string) disables the cache."""
    if cache_dir == "":
        return tokenize_records(records, tokenizer, max_length)
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = directory / f"{cache_key(revision_id, tokenizer_fingerprint(tokenizer), max_length)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                data = TokenizedData(ids=z["ids"], offsets=z["offsets"], prompt_lens=z["prompt_lens"],
                                     source_index=z["source_index"], stats=json.loads(str(z["stats"])),
                                     cache_path=str(path), cache_hit=True)
            if data.stats.get("records") == len(records):
                return data
        except (OSError, ValueError, KeyError):
            pass  # corrupt or foreign file: rebuild it
    data = tokenize_records(records, tokenizer, max_length)
    data.cache_path = str(path)
    if write:
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as handle:
            np.savez(handle, ids=data.ids, offsets=data.offsets, prompt_lens=data.prompt_lens,
                     source_index=data.source_index, stats=np.asarray(json.dumps(data.stats)))
    return data


# ----------------------------------------------------------------------------------------- collation
def _labels(ids: np.ndarray, prompt_len: int) -> np.ndarray:
    labels = ids.astype(np.int64)
    labels[:prompt_len] = IGNORE_INDEX
    return labels


class PaddedCollator:
    """Stanford Alpaca's collation: right-pad to the longest example of the micro-batch."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, examples: list[tuple[np.ndarray, int]]) -> dict[str, Any]:
        import torch

        width = max(len(ids) for ids, _ in examples)
        n = len(examples)
        input_ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((n, width), dtype=torch.long)
        example_index = torch.full((n, width), -1, dtype=torch.long)
        for row, (ids, plen) in enumerate(examples):
            k = len(ids)
            input_ids[row, :k] = torch.from_numpy(ids.astype(np.int64))
            labels[row, :k] = torch.from_numpy(_labels(ids, plen))
            attention[row, :k] = 1
            example_index[row, :k] = row
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels,
                "example_index": example_index, "num_examples": n}


class PaddingFreeCollator:
    """Concatenate the micro-batch into one row with position_ids restarting at 0 per example.

    transformers derives a block-diagonal causal mask (sdpa/eager/flex) or varlen cu_seqlens (flash
    attention) from the restarting position_ids when no attention_mask is given, so no example attends
    to another. The first token of every example is prompt (label -100), so after the causal shift no
    position is trained to predict the next example's first token.
    """

    def __call__(self, examples: list[tuple[np.ndarray, int]]) -> dict[str, Any]:
        import torch

        ids = np.concatenate([e for e, _ in examples]).astype(np.int64)
        labels = np.concatenate([_labels(e, p) for e, p in examples])
        positions = np.concatenate([np.arange(len(e)) for e, _ in examples])
        index = np.concatenate([np.full(len(e), row) for row, (e, _) in enumerate(examples)])
        return {"input_ids": torch.from_numpy(ids)[None], "position_ids": torch.from_numpy(positions)[None],
                "labels": torch.from_numpy(labels)[None], "example_index": torch.from_numpy(index)[None],
                "num_examples": len(examples)}


def make_collator(batching: str, pad_id: int) -> Callable[[list[tuple[np.ndarray, int]]], dict[str, Any]]:
    if batching == "padfree":
        return PaddingFreeCollator()
    if batching in {"padded", "grouped"}:
        return PaddedCollator(pad_id)
    raise UserError(f"--batching {batching}: expected padfree, padded or grouped")


# ------------------------------------------------------------------------------------ step planning
def steps_per_epoch(num_examples: int, effective_batch_size: int) -> int:
    """Alpaca's optimizer steps per epoch: one per effective batch, the last one possibly smaller."""
    return max(1, math.ceil(num_examples / effective_batch_size))


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The random example order of an epoch: a pure function of (seed, epoch), so resume is exact."""
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


@dataclass
class StepPlan:
    micro_batches: list[list[int]]  # this rank's micro-batches (an empty list = a dummy, zero-weight pass)
    label_tokens: int  # trained tokens in the whole global step, all ranks: the loss denominator


def plan_step(order: np.ndarray, step: int, effective_batch_size: int, micro_batch_size: int,
              rank: int, world_size: int, response_lens: np.ndarray, lengths: np.ndarray | None = None,
              grouped: bool = False) -> StepPlan:
    """The examples of one optimizer step (the same as Alpaca's: `effective_batch_size` consecutive
    examples of the epoch order), dealt round-robin to ranks and cut into micro-batches. Every rank gets
    the same number of micro-batches (collectives must match); `grouped` sorts a rank's share by length
    first, which changes padding but not the step's examples (so not the gradient)."""
    chosen = order[step * effective_batch_size:(step + 1) * effective_batch_size]
    mine = [int(i) for i in chosen[rank::world_size]]
    if grouped:
        by = lengths if lengths is not None else response_lens
        mine.sort(key=lambda i: int(by[i]), reverse=True)
    per_rank = math.ceil(len(chosen) / world_size)
    n_micro = max(1, math.ceil(per_rank / micro_batch_size))
    micro = [mine[k * micro_batch_size:(k + 1) * micro_batch_size] for k in range(n_micro)]
    return StepPlan(micro_batches=micro, label_tokens=int(response_lens[chosen].sum()))
