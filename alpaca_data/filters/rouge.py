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
* threshold-only (``with_stats=False``): prefix filtering -- the candidate's most frequent tokens are
  not probed as long as sharing only those cannot reach the threshold; probed postings give a
  token-multiset-overlap bound, combined with the length bound ``2*min(m, n)/(m+n)``; only pairs
  whose bound exceeds ``threshold - 1e-9`` get an exact LCS.  Drops therefore still report the
  exact max score and (first) most similar entry.

Not thread-safe: one index must not be queried from several Python threads at once (it owns
scratch buffers).  Internally a query is split over ``n_jobs`` threads (pool chunks; the numba
kernels release the GIL).
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
from alpaca_data.progress import track

__all__ = ["NoveltyDecision", "RougeNovelty", "RougeNoveltyIndex", "rouge_tokenize"]

# Same patterns as rouge_score/tokenize.py (no stemmer).
_NON_ALPHANUM_RE = re.compile(r"[^a-z0-9]+")
_VALID_TOKEN_RE = re.compile(r"^[a-z0-9]+$")

REASON_TOO_SIMILAR = "rouge_too_similar"
REASON_NO_TOKENS = "rouge_no_tokens"

_TOP_K = 10
# pool sizes below which one thread beats a thread hand-off (full score vectors / threshold-only)
_PARALLEL_MIN_STATS = 8_000
_PARALLEL_MIN_BEST = 40_000

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
        self.threshold = float(threshold)
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

    def _best_ids(self, cand: np.ndarray) -> tuple[float, int]:
        """Exact (max, first argmax) if the max exceeds the threshold; else a lower bound.

        Length bound + token-multiset-overlap bound (prefix filtering on the inverted index):
        only pairs whose upper bound exceeds the threshold get an exact LCS.
        """
        N = len(self.texts)
        self._ensure_index()
        ix = self._ix
        lcs = self._lcs
        thr_lo = self.threshold - lcs.BOUND_EPS
        nch = self._nchunks(N, _PARALLEL_MIN_BEST)
        res_f = np.empty(nch, np.float64)
        res_e = np.empty(nch, np.int64)
        res_cnt = np.empty(nch, np.int64)
        if nch == 1:
            lcs.best_serial(cand, thr_lo, self._flat, self._off, self._K, N, ix["sptr"], ix["s_ent"],
                            ix["s_mask"], ix["lptr"], ix["l_ent"], ix["l_moff"], ix["lm"], ix["nwords"],
                            ix["ov"], self._slot_of, res_f, res_e, res_cnt)  # fmt: skip
            return float(res_f[0]), int(res_e[0])
        probe_t, probe_c, s_skip = lcs.probe_plan(cand, ix["sptr"], ix["lptr"], thr_lo)
        CM = lcs.prep_candidate(cand, self._slot_of)
        try:
            rest = (cand.shape[0], probe_t, probe_c, s_skip, thr_lo, self._flat, self._off, self._K, N,
                    ix["sptr"], ix["s_ent"], ix["s_mask"], ix["lptr"], ix["l_ent"], ix["l_moff"], ix["lm"],
                    ix["nwords"], ix["ov"], self._slot_of, CM, res_f, res_e, res_cnt)  # fmt: skip
            self._run_chunks(lcs.best_chunk, nch, lambda c: (c, nch, *rest))
        finally:
            lcs.reset_slots(cand, self._slot_of)
        best, best_e = -1.0, -1
        for f, e in zip(res_f.tolist(), res_e.tolist()):
            if e >= 0 and (f > best or (f == best and e < best_e)):
                best, best_e = f, e
        return best, best_e

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
            best, i = self._best_ids(cand)
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
        tokens = rouge_tokenize(text)
        d = self._decide(self._ids(tokens, grow=False), with_stats)
        if d.keep and tokens:
            self._append(text, self._ids(tokens, grow=True))
        return d

    def filter(
        self, texts: Iterable[str], with_stats: bool = True, progress: bool = True
    ) -> list[NoveltyDecision]:
        """Greedy filtering: each text is checked against the pool plus the texts kept before it
        (kept texts are added to the pool), i.e. ``[self.offer(t, with_stats) for t in texts]``.

        Shows a rich progress bar for more than ~2000 texts unless ``progress=False``.
        """
        return [self.offer(text, with_stats) for text in track(texts, "ROUGE-L novelty", enabled=progress)]


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
        return [self.check(record) for record in track(records, "ROUGE-L novelty", enabled=progress)]

    def settings(self) -> dict[str, Any]:
        return {"threshold": self.index.threshold, "pool_size": self.pool_size,
                "on_no_tokens": self.index.on_no_tokens}
