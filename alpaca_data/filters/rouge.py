"""ROUGE-L novelty filtering, exactly as Stanford Alpaca does it, but fast.

Stanford Alpaca keeps a generated instruction only if its ROUGE-L F-measure against every
instruction kept so far is ``<= 0.7``; it scores with ``rouge_score`` (no stemmer)::

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    tokens = scorer._tokenizer.tokenize(inst)
    scores = [rouge_scorer._score_lcs(tokens, t).fmeasure for t in all_instruction_tokens]
    most_similar = {all_instructions[i]: scores[i] for i in np.argsort(scores)[-10:][::-1]}
    if max(scores) > 0.7: drop
    avg_similarity_score = float(np.mean(scores))

:class:`RougeNoveltyIndex` reproduces those decisions and numbers exactly (same tokenisation,
same LCS, same float64 F-measure formula and operation order, ``np.argsort``/``np.mean`` on an
identical score vector), while computing the LCS bit-parallel over an inverted index of the pool
(numba kernels in :mod:`alpaca_data.filters._lcs`).

Design:

* tokens -> integer ids; the pool is a flat int32 token array + offsets (amortised doubling, no
  per-add re-copy).  Entries are indexed in an inverted index (token -> entry, per-entry match
  mask: one uint64 for <= 64 tokens, several words for longer entries); texts added since the last
  (geometrically scheduled) rebuild form a small tail scanned densely.
* full score vectors (``scores``, ``with_stats=True``): Hyyro's bit-parallel LCS
  ``U = V & M[b]; V = (V + U) | (V - U)`` with the *pool* entries as bit-vectors; a candidate token
  that is absent from an entry leaves its ``V`` unchanged, so only the postings of the candidate's
  tokens are touched.  Top-10 uses ``argpartition`` when the 11 largest scores are distinct (then
  every sort agrees) and ``np.argsort`` of the full vector otherwise, so ties break exactly as in
  Alpaca's code.
* threshold-only (``with_stats=False``): a second, append-only *prefix* index (prefix filtering
  under one global token order, see :mod:`alpaca_data.filters._lcs`): an entry posts only the
  tokens of its prefix (the ~46% of its token occurrences that come first in the order, for
  0.7), a candidate probes only its own prefix, and a pair that could score above
  ``threshold - 1e-9`` always shares a prefix token; every such pair passing the length bound
  ``2*min(m, n)/(m+n)`` gets an exact LCS.  Drops therefore still report the exact max score and
  (first) most similar entry.  Postings are appended as the pool grows (no rebuilds), so the cost
  per candidate follows the postings of its rare tokens, not the pool size.
* batches (:meth:`RougeNoveltyIndex.filter` with ``with_stats=False``, ``RougeNovelty.check_all``):
  sub-batches of candidates are scored against the pool as it stood before the sub-batch on
  ``n_jobs`` threads at once (read-only), then a serial greedy pass in record order adds each
  candidate's best against the candidates kept earlier in the sub-batch (a small local prefix
  index) and appends the kept ones.  The max over the pool and over the earlier kept candidates
  is the max over the pool the candidate would meet one at a time, ties go to the earlier entry,
  and which pairs are verified depends only on the two texts: decisions, scores and most-similar
  entries are those of calling :meth:`offer` on each text in turn, whatever the batching.

Not thread-safe: one index must not be queried from several Python threads at once (it owns
scratch buffers).  Internally work is split over ``n_jobs`` threads (the numba kernels release
the GIL).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from alpaca_data.filters.steps import Step, Verdict
from alpaca_data.progress import TRACK_MIN_ITEMS, progress_bar, track

__all__ = ["NoveltyDecision", "RougeNovelty", "RougeNoveltyIndex", "rouge_tokenize"]

_BLOCK = 8  # == _lcs.BLOCK (kept here so the module imports without numba)

# Same patterns as rouge_score/tokenize.py (no stemmer).
_NON_ALPHANUM_RE = re.compile(r"[^a-z0-9]+")
_VALID_TOKEN_RE = re.compile(r"^[a-z0-9]+$")

REASON_TOO_SIMILAR = "rouge_too_similar"
REASON_NO_TOKENS = "rouge_no_tokens"

_TOP_K = 10
# pool sizes below which one thread beats a thread hand-off (full score vectors)
_PARALLEL_MIN_STATS = 8_000
# threshold-only batches: candidates per sub-batch, and the least candidates x pool entries worth threads
_SUB_BATCH = 4096
_PARALLEL_MIN_PAIRS = 1_000_000

_EXECUTOR: ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _executor(workers: int) -> ThreadPoolExecutor:
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None or _EXECUTOR._max_workers < workers:
            _EXECUTOR = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rouge-lcs")
        return _EXECUTOR


def rouge_tokenize(text: str) -> list[str]:
    """Tokens exactly as ``rouge_score``'s ``DefaultTokenizer(use_stemmer=False)``.

    Lower-case, replace every run of characters outside ``[a-z0-9]`` by a space, split, keep
    tokens matching ``^[a-z0-9]+$``.  Non-ASCII text (e.g. Chinese) therefore yields no tokens.
    """
    text = _NON_ALPHANUM_RE.sub(" ", text.lower())
    # after the substitution only [a-z0-9] and single spaces remain, so split() == SPACES_RE.split
    # minus the empty strings that rouge_score's final VALID_TOKEN_RE check removes.
    return [t for t in text.split() if _VALID_TOKEN_RE.match(t)]


@dataclass
class NoveltyDecision:
    """Outcome of checking one text against the pool.

    keep: whether the text is novel enough.
    reason: ``None`` (kept), ``"rouge_too_similar"`` (max score > threshold) or
        ``"rouge_no_tokens"`` (no ROUGE tokens, e.g. non-English text).
    max_score: the highest ROUGE-L F-measure against the pool (0.0 for an empty pool / no tokens).
        Always exact for drops and whenever ``with_stats=True``.  For a *kept* text checked with
        ``with_stats=False`` it is the best score among the pairs that the upper bounds could not
        rule out (a lower bound of the true maximum, which is ``<= threshold`` anyway).
    most_similar / most_similar_index: the pool entry attaining ``max_score`` (first one on ties,
        like ``np.argmax``); ``None`` when there is none.
    top: with stats, the top-10 ``(text, score)`` pairs in the order of
        ``np.argsort(scores)[-10:][::-1]`` -- ``dict(top)`` equals Alpaca's
        ``most_similar_instructions``; ``[]`` for an empty pool; ``None`` without stats or without
        tokens.
    mean: with stats, ``float(np.mean(scores))``; ``None`` for an empty pool, without stats, or
        without tokens.
    """

    keep: bool
    reason: str | None
    max_score: float
    most_similar: str | None
    most_similar_index: int | None
    top: list[tuple[str, float]] | None = None
    mean: float | None = None


def _grow(arr: np.ndarray, need: int) -> np.ndarray:
    if need <= arr.shape[0]:
        return arr
    cap = max(need, 2 * arr.shape[0], 16)
    new = np.empty(cap, arr.dtype)
    new[: arr.shape[0]] = arr
    return new


def top_indices(scores: np.ndarray, k: int = _TOP_K) -> np.ndarray:
    """``np.argsort(scores)[-k:][::-1]`` -- computed cheaply when the result is tie-free.

    If the ``k+1`` largest values are pairwise distinct, every correct sort yields the same last
    ``k`` positions, so an ``argpartition`` suffices; otherwise (ties that a sort could order
    either way) the full ``np.argsort`` is used so tie-breaking is identical to Alpaca's code.
    """
    n = scores.shape[0]
    if n <= 4 * k + 8:
        return np.argsort(scores)[-k:][::-1]
    part = np.argpartition(scores, n - k - 1)[n - k - 1 :]
    vals = scores[part]
    order = np.argsort(vals)
    sv = vals[order]
    if np.all(sv[1:] > sv[:-1]):
        return part[order][-k:][::-1]
    return np.argsort(scores)[-k:][::-1]


class RougeNoveltyIndex:
    """Incremental pool of texts answering "is this new text ROUGE-L-novel?" exactly like Alpaca.

    Args:
        threshold: drop a text when its max ROUGE-L F-measure against the pool is ``> threshold``
            (a score exactly equal to the threshold is kept).  Alpaca uses 0.7.
        n_jobs: threads a query is split over, by pool chunks (``None``: the usable cores;
            queries on small pools use one thread).
        on_no_tokens: what to do with a text that has no ROUGE tokens (``rouge_score`` drops all
            non-``[a-z0-9]`` characters, so e.g. Chinese text has none and would silently score 0
            against everything).  ``"drop"`` (default): ``keep=False, reason="rouge_no_tokens"``.
            ``"keep"``: ``keep=True, reason="rouge_no_tokens"``, and the text is *not* added to the
            pool by :meth:`offer`/:meth:`filter` (it could never be similar to anything).  Texts
            given to :meth:`add` are always added; token-less pool entries score 0 against
            everything, as in ``rouge_score``.

    Usage::

        idx = RougeNoveltyIndex(threshold=0.7)
        idx.add(seed_instructions)
        decisions = idx.filter(generated)            # greedy, like Alpaca's loop
        d = idx.offer("Write a poem about the sea.")  # decide + add if kept
    """

    def __init__(self, threshold: float = 0.7, n_jobs: int | None = None, on_no_tokens: str = "drop"):
        if on_no_tokens not in ("drop", "keep"):
            raise ValueError(f"on_no_tokens must be 'drop' or 'keep', not {on_no_tokens!r}")
        if not threshold >= 0.0:
            raise ValueError(f"threshold must be >= 0, not {threshold!r}")
        from alpaca_data.filters import _lcs  # deferred: numba import/JIT is not free

        self._lcs = _lcs
        self._threshold = float(threshold)
        self.n_jobs = n_jobs
        self.on_no_tokens = on_no_tokens
        self.texts: list[str] = []
        self._vocab: dict[str, int] = {}
        self._flat = np.empty(1024, np.int32)  # token ids of all entries, concatenated
        self._nflat = 0
        self._off = np.zeros(256, np.int64)  # entry e = flat[off[e]:off[e+1]]
        self._slot_of = np.full(1024, -1, np.int64)  # scratch, vocab-sized, kept all -1
        self._K = 0  # entries [0, K) are in the inverted index, [K, N) are the dense tail
        self._ix = None
        # prefix index (threshold-only queries): entries [0, _px_posted) are posted
        self._px_posted = 0
        self._px = self._px_arrays(1024, 256)
        self._px_nblk = 0
        self._local = self._px_arrays(1024, 256)  # the in-batch kept candidates (emptied after each batch)
        self._scratch: list[tuple[np.ndarray, np.ndarray]] = []  # per thread: (entry stamps, token slots)
        self._serial = 0  # stamp values: one per query, never reused

    @property
    def threshold(self) -> float:
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        value = float(value)
        if value != self._threshold:  # prefixes depend on the threshold: re-post the pool
            self._threshold = value
            self._px = self._px_arrays(self._px["cnt"].shape[0], self._px["next"].shape[0])
            self._px_posted = self._px_nblk = 0

    @property
    def _thr_lo(self) -> float:
        return self._threshold - self._lcs.BOUND_EPS

    @staticmethod
    def _px_arrays(nvocab: int, nblocks: int) -> dict[str, np.ndarray]:
        return {"head": np.zeros(nvocab, np.int64), "tail": np.zeros(nvocab, np.int64),
                "cnt": np.zeros(nvocab, np.int64), "ent": np.empty(nblocks * _BLOCK, np.int32),
                "end": np.empty(nblocks * _BLOCK, np.int32), "n": np.empty(nblocks * _BLOCK, np.int32),
                "next": np.empty(nblocks, np.int64)}

    @staticmethod
    def _px_fit(px: dict[str, np.ndarray], nvocab: int, nblocks: int) -> None:
        for name in ("head", "tail", "cnt"):
            if px[name].shape[0] < nvocab:
                grown = np.zeros(max(nvocab, 2 * px[name].shape[0]), np.int64)
                grown[: px[name].shape[0]] = px[name]
                px[name] = grown
        if px["next"].shape[0] < nblocks:
            cap = max(nblocks, 2 * px["next"].shape[0])
            px["next"] = _grow(px["next"], cap)
            for name in ("ent", "end", "n"):
                px[name] = _grow(px[name], cap * _BLOCK)

    def _px_sync(self) -> None:
        """Post the prefixes of the entries added since the last query."""
        N = len(self.texts)
        px = self._px
        self._px_fit(px, len(self._vocab), 0)
        while self._px_posted < N:
            self._px_posted, self._px_nblk = self._lcs.px_insert(
                self._px_posted, N, self._flat, self._off, self._thr_lo, px["head"], px["tail"], px["cnt"],
                px["ent"], px["end"], px["n"], px["next"], self._px_nblk)
            if self._px_posted < N:
                self._px_fit(px, 0, self._px_nblk + 1 + int(self._off[self._px_posted + 1] - self._off[self._px_posted]))

    def _scratch_for(self, workers: int, entries: int) -> list[tuple[np.ndarray, ...]]:
        """Per thread: entry stamps, overlap counts, remaining-overlap bounds, touched entries, token slots."""
        nvocab = max(len(self._vocab), 1)
        while len(self._scratch) < workers:
            self._scratch.append((np.full(1024, -1, np.int64), np.empty(1024, np.int32), np.empty(1024, np.int32),
                                  np.empty(1024, np.int32), np.full(1024, -1, np.int64)))
        for w in range(workers):
            stamp, acc, rem, touched, slot = self._scratch[w]
            if stamp.shape[0] < entries:
                cap = max(entries, 2 * stamp.shape[0])
                grown = np.full(cap, -1, np.int64)
                grown[: stamp.shape[0]] = stamp
                stamp = grown
                acc, rem, touched = (np.empty(cap, np.int32) for _ in range(3))
            if slot.shape[0] < nvocab:
                slot = np.full(max(nvocab, 2 * slot.shape[0]), -1, np.int64)
            self._scratch[w] = (stamp, acc, rem, touched, slot)
        return self._scratch[:workers]

    # ------------------------------------------------------------------ pool
    def __len__(self) -> int:
        return len(self.texts)

    def _ids(self, tokens: list[str], grow: bool) -> np.ndarray:
        vocab = self._vocab
        if grow:
            for t in tokens:
                if t not in vocab:
                    vocab[t] = len(vocab)
            return np.fromiter((vocab[t] for t in tokens), np.int32, len(tokens))
        return np.fromiter((vocab.get(t, -1) for t in tokens), np.int32, len(tokens))

    def _append(self, text: str, ids: np.ndarray) -> None:
        n = len(self.texts)
        m = ids.shape[0]
        self._flat = _grow(self._flat, self._nflat + m)
        self._flat[self._nflat : self._nflat + m] = ids
        self._nflat += m
        self._off = _grow(self._off, n + 2)
        self._off[n + 1] = self._nflat
        self.texts.append(text)
        if len(self._vocab) > self._slot_of.shape[0]:
            cap = max(len(self._vocab), 2 * self._slot_of.shape[0])
            self._slot_of = np.full(cap, -1, np.int64)

    def add(self, texts: Iterable[str]) -> None:
        """Add texts to the pool without checking them."""
        if isinstance(texts, str):
            raise TypeError("add() takes an iterable of texts, not a single string")
        for text in texts:
            self._append(text, self._ids(rouge_tokenize(text), grow=True))

    def _ensure_index(self) -> None:
        N = len(self.texts)
        tail = N - self._K
        if self._ix is not None and tail <= max(256, self._K // 16):
            return
        sptr, s_ent, s_mask, lptr, l_ent, l_moff, lm, nwords, woff = self._lcs.build_postings(
            self._flat, self._off, N, max(len(self._vocab), 1)
        )
        self._ix = {
            "sptr": sptr, "s_ent": s_ent, "s_mask": s_mask, "lptr": lptr, "l_ent": l_ent, "l_moff": l_moff,
            "lm": lm, "nwords": nwords, "woff": woff,
            "V1": np.empty(max(N, 1), np.uint64),
            "VL": np.empty(max(int(woff[N]), 1), np.uint64),
            "ov": np.empty(max(N, 1), np.int64),
        }  # fmt: skip
        self._K = N

    def _nchunks(self, n_entries: int, min_entries: int) -> int:
        nj = self.n_jobs if self.n_jobs is not None else _cpu_count()
        nj = max(1, int(nj))
        if nj == 1 or n_entries < min_entries:
            return 1
        return min(nj, max(1, n_entries // max(1, min_entries // 2)))

    def _run_chunks(self, fn, nch: int, make_args) -> None:
        """Run ``fn(*make_args(c))`` for chunks ``c < nch``: chunk 0 in this thread, the others on
        worker threads (the numba kernels release the GIL).  Python threads rather than numba's
        ``parallel=True``: OpenMP barriers spin and collapse when the cores are shared."""
        if nch == 1:
            fn(*make_args(0))
            return
        ex = _executor(nch - 1)
        futs = [ex.submit(fn, *make_args(c)) for c in range(1, nch)]
        fn(*make_args(0))
        for f in futs:
            f.result()

    # ------------------------------------------------------------------ scoring
    def _scores_ids(self, cand: np.ndarray) -> np.ndarray:
        N = len(self.texts)
        out = np.zeros(N, np.float64)
        if N == 0 or cand.shape[0] == 0:
            return out
        self._ensure_index()
        if len(self._vocab) > self._slot_of.shape[0]:  # offer() gives the candidate's new tokens ids first
            self._slot_of = np.full(max(len(self._vocab), 2 * self._slot_of.shape[0]), -1, np.int64)
        ix = self._ix
        lcs = self._lcs
        nch = self._nchunks(N, _PARALLEL_MIN_STATS)
        if nch == 1:
            lcs.stats_serial(cand, self._flat, self._off, self._K, N, ix["sptr"], ix["s_ent"], ix["s_mask"],
                             ix["lptr"], ix["l_ent"], ix["l_moff"], ix["lm"], ix["nwords"], ix["woff"],
                             ix["V1"], ix["VL"], self._slot_of, out)  # fmt: skip
            return out
        CM = lcs.prep_candidate(cand, self._slot_of)
        try:
            rest = (cand, cand.shape[0], self._flat, self._off, self._K, N, ix["sptr"], ix["s_ent"],
                    ix["s_mask"], ix["lptr"], ix["l_ent"], ix["l_moff"], ix["lm"], ix["nwords"], ix["woff"],
                    ix["V1"], ix["VL"], self._slot_of, CM, out)  # fmt: skip
            self._run_chunks(lcs.stats_chunk, nch, lambda c: (c, nch, *rest))
        finally:
            lcs.reset_slots(cand, self._slot_of)
        return out

    def _px_best(self, cand: np.ndarray) -> tuple[float, int]:
        """Exact (max, first argmax) if the max exceeds the threshold; else the best verified pair (a
        lower bound), or (-1.0, -1) when no pair could exceed it."""
        self._px_sync()
        ((stamp, acc, rem, touched, slot),) = self._scratch_for(1, len(self.texts))
        px = self._px
        self._serial += 1
        f, e = self._lcs.px_query(cand, self._thr_lo, self._flat, self._off, px["head"], px["cnt"], px["ent"],
                                  px["end"], px["n"], px["next"], stamp, acc, rem, touched, self._serial, slot)
        return float(f), int(e)

    def scores(self, text: str) -> np.ndarray:
        """Exact ROUGE-L F-measures (float64) of ``text`` against every pool entry, in pool order.

        Bit-identical to ``[rouge_scorer._score_lcs(tokenize(text), tokenize(p)).fmeasure for p in pool]``.
        """
        return self._scores_ids(self._ids(rouge_tokenize(text), grow=False))

    def _decide(self, cand: np.ndarray, with_stats: bool) -> NoveltyDecision:
        if cand.shape[0] == 0:
            return NoveltyDecision(self.on_no_tokens == "keep", REASON_NO_TOKENS, 0.0, None, None, None, None)
        N = len(self.texts)
        if N == 0:
            return NoveltyDecision(True, None, 0.0, None, None, [] if with_stats else None, None)
        if with_stats:
            sc = self._scores_ids(cand)
            i = int(np.argmax(sc))
            best = float(sc[i])
            top = [(self.texts[j], float(sc[j])) for j in top_indices(sc).tolist()]
            mean = float(np.mean(sc))
        else:
            best, i = self._px_best(cand)
            top = mean = None
            if i < 0:  # nothing survived the bounds: every score is provably <= threshold
                best = 0.0
        keep = not (best > self.threshold)
        return NoveltyDecision(
            keep=keep,
            reason=None if keep else REASON_TOO_SIMILAR,
            max_score=best,
            most_similar=self.texts[i] if i >= 0 else None,
            most_similar_index=i if i >= 0 else None,
            top=top,
            mean=mean,
        )

    def check(self, text: str, with_stats: bool = True) -> NoveltyDecision:
        """Decide whether ``text`` is novel w.r.t. the pool; does not add it."""
        return self._decide(self._ids(rouge_tokenize(text), grow=False), with_stats)

    def offer(self, text: str, with_stats: bool = True) -> NoveltyDecision:
        """Decide like :meth:`check`, and add ``text`` to the pool if it is kept (and has tokens)."""
        ids = self._ids(rouge_tokenize(text), grow=True)  # ids in first-seen order of every offered text
        d = self._decide(ids, with_stats)
        if d.keep and ids.shape[0]:
            self._append(text, ids)
        return d

    def filter(
        self, texts: Iterable[str], with_stats: bool = True, progress: bool = True
    ) -> list[NoveltyDecision]:
        """Greedy filtering: each text is checked against the pool plus the texts kept before it
        (kept texts are added to the pool), i.e. ``[self.offer(t, with_stats) for t in texts]``.

        Shows a rich progress bar for more than ~2000 texts unless ``progress=False``.  Without stats,
        texts are decided in sub-batches on ``n_jobs`` threads, with the same decisions.
        """
        if with_stats:
            return [self.offer(text, with_stats) for text in track(texts, "ROUGE-L novelty", enabled=progress)]
        texts = texts if isinstance(texts, Sequence) else list(texts)
        out: list[NoveltyDecision] = []
        with progress_bar("ROUGE-L novelty", len(texts), enabled=progress, bar_min=TRACK_MIN_ITEMS) as advance:
            for start in range(0, len(texts), _SUB_BATCH):
                batch = texts[start : start + _SUB_BATCH]
                out += self._offer_batch(batch)
                advance(len(batch))
        return out

    def _offer_batch(self, texts: Sequence[str]) -> list[NoveltyDecision]:
        """``[self.offer(t, with_stats=False) for t in texts]``, scored against the pool on several threads."""
        lcs = self._lcs
        ids = [self._ids(rouge_tokenize(text), grow=True) for text in texts]
        nb = len(ids)
        coff = np.zeros(nb + 1, np.int64)
        np.cumsum([a.shape[0] for a in ids], out=coff[1:])
        cflat = np.concatenate(ids) if nb else np.empty(0, np.int32)
        self._px_sync()
        N0 = len(self.texts)
        thr_lo = self._thr_lo
        workers = self._workers(nb * N0)
        scratch = self._scratch_for(workers, N0 + nb)
        base = self._serial + 1
        self._serial += nb
        in_f = np.full(nb, -1.0)
        in_e = np.full(nb, -1, np.int64)
        px = self._px
        if N0:
            chunk = max(16, nb // (8 * workers))
            chunks = iter(range(0, nb, chunk))
            lock = threading.Lock()

            def work(w: int) -> None:
                stamp, acc, rem, touched, slot = scratch[w]
                while True:
                    with lock:
                        lo = next(chunks, None)
                    if lo is None:
                        return
                    lcs.px_query_many(lo, min(lo + chunk, nb), cflat, coff, thr_lo, self._flat, self._off,
                                      px["head"], px["cnt"], px["ent"], px["end"], px["n"], px["next"], stamp, acc,
                                      rem, touched, base, slot, in_f, in_e)

            self._run_chunks(work, workers, lambda w: (w,))
        # the greedy pass in record order, against the candidates kept earlier in this batch
        self._flat = _grow(self._flat, self._nflat + cflat.shape[0])
        self._off = _grow(self._off, N0 + nb + 2)
        local = self._local
        self._px_fit(local, len(self._vocab), cflat.shape[0] + 1)
        stamp, acc, rem, touched, slot = scratch[0]
        keep = np.zeros(nb, np.bool_)
        out_f = np.empty(nb, np.float64)
        out_e = np.empty(nb, np.int64)
        N, self._nflat = lcs.px_batch_greedy(cflat, coff, self._threshold, thr_lo, self.on_no_tokens == "keep",
                                             in_f, in_e, self._flat, self._off, N0, self._nflat, local["head"],
                                             local["tail"], local["cnt"], local["ent"], local["end"], local["n"],
                                             local["next"], stamp, acc, rem, touched, base, slot, keep, out_f, out_e)
        lcs.px_reset(self._flat, self._off, N0, N, local["cnt"])
        self.texts += [text for text, k, a in zip(texts, keep.tolist(), ids) if k and a.shape[0]]
        assert len(self.texts) == N
        if len(self._vocab) > self._slot_of.shape[0]:
            self._slot_of = np.full(max(len(self._vocab), 2 * self._slot_of.shape[0]), -1, np.int64)
        out = []
        for a, k, f, e in zip(ids, keep.tolist(), out_f.tolist(), out_e.tolist()):
            if a.shape[0] == 0:
                out.append(NoveltyDecision(k, REASON_NO_TOKENS, 0.0, None, None))
            else:
                out.append(NoveltyDecision(k, None if k else REASON_TOO_SIMILAR, f,
                                           self.texts[e] if e >= 0 else None, e if e >= 0 else None))
        return out

    def _workers(self, pairs: int) -> int:
        nj = self.n_jobs if self.n_jobs is not None else _cpu_count()
        return 1 if pairs < _PARALLEL_MIN_PAIRS else max(1, int(nj))


class RougeNovelty(Step):
    """Greedy ROUGE-L novelty as a filter step: an instruction is dropped when its F-measure against the pool
    (the starting pool plus every instruction kept before it) exceeds the threshold, as Stanford Alpaca does.

    exact_scores: compute every score (the kept record's verdict then carries its exact best score and most
    similar instruction, as generation records them); otherwise only what the threshold needs.
    """

    name = "rouge_novelty"

    def __init__(self, threshold: float = 0.7, pool: Iterable[str] = (), on_no_tokens: str = "drop",
                 exact_scores: bool = False):
        self.index = RougeNoveltyIndex(threshold=threshold, on_no_tokens=on_no_tokens)
        self.index.add(pool)
        self.pool_size = len(self.index)
        self.exact_scores = exact_scores

    def check(self, record: Mapping[str, Any]) -> Verdict:
        decision = self.index.offer(record["instruction"], with_stats=self.exact_scores)
        return Verdict(record if isinstance(record, dict) else dict(record),
                       None if decision.keep else decision.reason, score=float(decision.max_score),
                       most_similar=decision.most_similar)

    def check_all(self, records: Sequence[Mapping[str, Any]], progress: bool = True) -> list[Verdict]:
        """Like ``check`` on each record in turn (and successive calls continue the same greedy pass);
        without exact scores the candidates are scored in sub-batches on several threads."""
        if self.exact_scores:
            return [self.check(record) for record in track(records, "ROUGE-L novelty", enabled=progress)]
        decisions = self.index.filter([record["instruction"] for record in records], with_stats=False,
                                      progress=progress)
        return [Verdict(record if isinstance(record, dict) else dict(record),
                        None if decision.keep else decision.reason, score=float(decision.max_score),
                        most_similar=decision.most_similar) for record, decision in zip(records, decisions)]

    def settings(self) -> dict[str, Any]:
        return {"threshold": self.index.threshold, "pool_size": self.pool_size,
                "on_no_tokens": self.index.on_no_tokens}
