"""Parity tests: RougeNoveltyIndex vs rouge_score (as Stanford Alpaca uses it).

Ground truth is ``rouge_scorer._score_lcs(new_tokens, pool_tokens).fmeasure`` with rouge_score's own
tokenizer.  rouge_score is ~4k pairs/s, so it is used for a few full score vectors and for every
score that decides something (the max of every drop, top-10 pairs, random pairs); the bulk (all
2,000 candidates x 5,000 pool) is checked against an independent classic-DP LCS reference written
here (numba, no bit tricks, no inverted index) that is itself validated against rouge_score.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numba  # noqa: F401 - the kernels' compiler: a missing one must fail the suite, not skip it
import numpy as np
import pytest
from rouge_score import rouge_scorer

from alpaca_data.filters import rouge as rouge_mod
from alpaca_data.filters.rouge import NoveltyDecision, RougeNoveltyIndex, rouge_tokenize, top_indices

DATA = Path(__file__).resolve().parent / "data"  # the corpus samples in tests/data/corpora (~2,500 records)
SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
TOK = SCORER._tokenizer.tokenize
THR = 0.7
EPS = 1e-9


# ----------------------------------------------------------------------------- independent reference
@numba.njit(cache=False)
def _dp_lcs(a, b):
    n = b.shape[0]
    prev = np.zeros(n + 1, np.int64)
    cur = np.zeros(n + 1, np.int64)
    for i in range(a.shape[0]):
        for j in range(n):
            if a[i] == b[j]:
                cur[j + 1] = prev[j] + 1
            else:
                cur[j + 1] = max(prev[j + 1], cur[j])
        prev, cur = cur, prev
    return prev[n]


@numba.njit(cache=False)
def _ref_lcs_all(cand, flat, off, lens, sorted_flat, cand_sorted, thr_lo, bounded, entries):
    """LCS of cand vs pool ``entries`` by DP; with ``bounded`` only pairs whose multiset-overlap
    bound 2*ov/(m+n) exceeds thr_lo (others get -1)."""
    out = np.full(entries.shape[0], -1, np.int64)
    n = cand.shape[0]
    for q in range(entries.shape[0]):
        e = entries[q]
        m = lens[e]
        if m == 0 or n == 0:
            out[q] = 0
            continue
        if bounded:
            # multiset overlap by merging sorted token ids
            i = off[e]
            j = 0
            ov = 0
            while i < off[e + 1] and j < n:
                if sorted_flat[i] == cand_sorted[j]:
                    ov += 1
                    i += 1
                    j += 1
                elif sorted_flat[i] < cand_sorted[j]:
                    i += 1
                else:
                    j += 1
            if 2.0 * ov / (m + n) <= thr_lo:
                continue
        out[q] = _dp_lcs(cand, flat[off[e] : off[e + 1]])
    return out


def _fm(lcs: np.ndarray, lens: np.ndarray, n: int) -> np.ndarray:
    """rouge_score's F-measure, vectorised with the same float64 operation order."""
    lcs = np.asarray(lcs, np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = lcs / lens
        r = lcs / n if n else np.zeros(lens.shape)
        f = 2 * p * r / (p + r)
    return np.where((lens > 0) & (n > 0) & (p + r > 0), f, 0.0)


class RefPool:
    """Pool tokenised with rouge_score's own tokenizer, ids from its own vocab."""

    def __init__(self, texts: list[str]):
        self.vocab: dict[str, int] = {}
        self.toks = [self._ids(TOK(t), True) for t in texts]
        self.lens = np.array([len(t) for t in self.toks], np.int64)
        self.off = np.concatenate([[0], np.cumsum(self.lens)]).astype(np.int64)
        self.flat = np.concatenate([*self.toks, np.empty(0, np.int64)]).astype(np.int64)
        self.sflat = np.concatenate([*(np.sort(t) for t in self.toks), np.empty(0, np.int64)]).astype(
            np.int64
        )

    def _ids(self, toks, grow):
        if grow:
            for t in toks:
                self.vocab.setdefault(t, len(self.vocab))
        return np.array([self.vocab.get(t, -1 - k) for k, t in enumerate(toks)], np.int64)

    def scores(self, text: str) -> np.ndarray:
        c = self._ids(TOK(text), False)
        ents = np.arange(len(self.lens))
        lcs = _ref_lcs_all(c, self.flat, self.off, self.lens, self.sflat, np.sort(c), 0.0, False, ents)
        return _fm(lcs, self.lens, len(c))

    def best(self, text: str, thr: float = THR, entries=None) -> tuple[float, int]:
        """(max, first argmax) over pairs (of ``entries``, default all) that can exceed thr;
        exact when max > thr; the index is a position in ``entries``."""
        c = self._ids(TOK(text), False)
        ents = np.arange(len(self.lens)) if entries is None else np.asarray(entries, np.int64)
        lcs = _ref_lcs_all(c, self.flat, self.off, self.lens, self.sflat, np.sort(c), thr - EPS, True, ents)
        f = np.where(lcs >= 0, _fm(np.maximum(lcs, 0), self.lens[ents], len(c)), -1.0)
        i = int(np.argmax(f)) if len(f) else -1
        return (float(f[i]), i) if len(f) else (-1.0, -1)


def original_stats(texts: list[str], scores: np.ndarray):
    """Stanford Alpaca's bookkeeping, verbatim."""
    most_similar = {texts[i]: scores[i] for i in np.argsort(scores)[-10:][::-1]}
    return bool(max(scores) > THR), most_similar, float(np.mean(scores))


def rs_scores(text: str, pool: list[str]) -> np.ndarray:
    t = TOK(text)
    return np.array([rouge_scorer._score_lcs(t, TOK(p)).fmeasure for p in pool], np.float64)


# ----------------------------------------------------------------------------- real-data fixture
def _load_instructions() -> list[str]:
    files = sorted((DATA / "corpora").glob("*.json"))
    assert files, f"no corpora under {DATA}"
    out = []
    for f in files:
        out += [r["instruction"] for r in json.loads(f.read_text())]
    return out


@pytest.fixture(scope="module")
def real():
    texts = _load_instructions()
    rng = random.Random(1234)
    rng.shuffle(texts)
    pool, cands = texts[:1200], texts[1200:1800]
    idx = RougeNoveltyIndex(threshold=THR, n_jobs=2)
    idx.add(pool)
    return {"texts": texts, "pool": pool, "cands": cands, "idx": idx, "ref": RefPool(pool), "rng": rng}


def test_tokenizer_matches_rouge_score(real):
    samples = real["texts"][:3000] + [
        "",
        "   ",
        "中文指令",
        "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ",
        "\u212a kelvin İstanbul ǅ",
        "a_b-c.d e\nf\tg",
        "x²³ 12,5 don't",
    ]
    for t in samples:
        assert rouge_tokenize(t) == TOK(t), t


def test_all_candidates_decisions_vs_reference(real):
    """Every one of the 600 candidates vs the full 1,200 pool: keep/drop, and exact max +
    argmax for every drop; the max of every drop is re-scored with rouge_score itself."""
    idx, ref, pool = real["idx"], real["ref"], real["pool"]
    drops = 0
    for c in real["cands"]:
        d = idx.check(c, with_stats=False)
        if not TOK(c):
            assert (d.keep, d.reason) == (False, "rouge_no_tokens")
            continue
        best, i = ref.best(c)
        assert d.keep == (not best > THR), c
        if not d.keep:
            drops += 1
            assert d.reason == "rouge_too_similar"
            assert d.max_score == best and d.most_similar_index == i and d.most_similar == pool[i]
            assert rouge_scorer._score_lcs(TOK(c), TOK(pool[i])).fmeasure == d.max_score
        else:
            assert d.reason is None and d.max_score <= THR
    assert drops > 50  # the corpora are templated: plenty of near-duplicates


def test_full_stats_sample_vs_reference(real):
    """Full score vectors (bit-identical), max, top-10 (order incl. ties) and mean for a sample."""
    idx, ref, pool, rng = real["idx"], real["ref"], real["pool"], real["rng"]
    sample = rng.sample([c for c in real["cands"] if TOK(c)], 150)
    idx1 = RougeNoveltyIndex(threshold=THR, n_jobs=1)
    idx1.add(pool)
    checked_pairs = []
    for k, c in enumerate(sample):
        s = idx.scores(c)
        r = ref.scores(c)
        assert s.dtype == np.float64 and np.array_equal(s, r), c
        if k < 30:
            assert np.array_equal(idx1.scores(c), r)
        d = idx.check(c, with_stats=True)
        drop, most_similar, mean = original_stats(pool, r)
        assert d.keep == (not drop)
        assert d.max_score == r.max() and d.most_similar_index == int(np.argmax(r))
        assert [p for p, _ in d.top] == [pool[i] for i in np.argsort(r)[-10:][::-1]]
        assert dict(d.top) == most_similar
        assert d.mean == mean
        d2 = idx.check(c, with_stats=False)
        assert d2.keep == d.keep and (
            d.keep or (d2.max_score, d2.most_similar_index) == (d.max_score, d.most_similar_index)
        )
        if k < 40:
            checked_pairs += [(c, pool[i], sc) for i, sc in [(j, r[j]) for j in np.argsort(r)[-10:]]]
    # the reference's top-10 pairs and random pairs, re-scored by rouge_score itself
    for _ in range(600):
        c, i = rng.choice(sample), rng.randrange(len(pool))
        checked_pairs.append((c, pool[i], idx.scores(c)[i]))
    for c, p, sc in checked_pairs:
        assert rouge_scorer._score_lcs(TOK(c), TOK(p)).fmeasure == sc


def test_rouge_score_full_vectors(real):
    """rouge_score's own full vectors for two candidates (one drop, one keep) over the whole pool."""
    idx, pool = real["idx"], real["pool"]
    cands = [c for c in real["cands"] if TOK(c)]
    drop = next(c for c in cands if not idx.check(c, with_stats=False).keep)
    keep = next(c for c in cands if idx.check(c, with_stats=False).keep)
    for c in (drop, keep):
        r = rs_scores(c, pool)
        d = idx.check(c)
        assert np.array_equal(idx.scores(c), r)
        is_drop, most_similar, mean = original_stats(pool, r)
        assert d.keep == (not is_drop) and dict(d.top) == most_similar and d.mean == mean


def test_greedy_filter_equals_offer_and_reference(real):
    texts = real["texts"][1800:]
    a = RougeNoveltyIndex(threshold=THR).filter(texts, with_stats=False, progress=False)
    seq_idx = RougeNoveltyIndex(threshold=THR)
    b = [seq_idx.offer(t, with_stats=True) for t in texts]
    assert [d.keep for d in a] == [d.keep for d in b]
    assert all(isinstance(d, NoveltyDecision) for d in a)
    # independent greedy reference
    ref = RefPool(texts)
    kept: list[str] = []
    kept_ids: list[int] = []
    for k, (t, da, db) in enumerate(zip(texts, a, b)):
        if not TOK(t):
            assert da.reason == db.reason == "rouge_no_tokens" and not da.keep
            continue
        best, i = ref.best(t, entries=kept_ids) if kept else (-1.0, -1)
        assert da.keep == (not best > THR), t
        if not da.keep:
            assert (da.max_score, da.most_similar_index) == (best, i) == (db.max_score, db.most_similar_index)
            assert da.most_similar == kept[i]
        else:
            kept.append(t)
            kept_ids.append(k)
    assert seq_idx.texts == kept and len(seq_idx) == len(kept)
    assert 0 < len(kept) < len(texts)


# ----------------------------------------------------------------------------- synthetic / edge cases
def _rand_text(rng, n_words, vocab=6):
    return " ".join(f"w{rng.randrange(vocab)}" for _ in range(n_words))


@pytest.mark.parametrize("parallel", [False, True])
def test_long_strings_multiword(monkeypatch, parallel):
    """> 64 and > 128 tokens on both sides, inverted-index part and not-yet-indexed tail,
    single- and multi-thread chunking."""
    if parallel:
        monkeypatch.setattr(rouge_mod, "_PARALLEL_MIN_STATS", 8)
        monkeypatch.setattr(rouge_mod, "_PARALLEL_MIN_PAIRS", 8)
    rng = random.Random(7 + parallel)
    lengths = [0, 1, 5, 63, 64, 65, 100, 127, 128, 129, 192, 200, 300]
    pool = [_rand_text(rng, rng.choice(lengths)) for _ in range(90)]
    pool += [pool[3] + " w1 w2", pool[10]]  # near-duplicates
    idx = RougeNoveltyIndex(threshold=THR, n_jobs=2)
    idx.add(pool[:50])
    idx.scores("w1 w2 w3")  # builds the index over the first 50, rest stays in the tail
    idx.add(pool[50:])
    ref = RefPool(pool)
    cands = [_rand_text(rng, n) for n in (3, 64, 65, 70, 128, 129, 150, 250)] + [pool[3], pool[20] + " w0"]
    for c in cands:
        r = ref.scores(c)
        assert np.array_equal(idx.scores(c), r)
        for thr in (0.3, 0.7, 0.9):
            idx.threshold = thr
            d, d2 = idx.check(c, with_stats=True), idx.check(c, with_stats=False)
            assert d.keep == d2.keep == (not r.max() > thr)
            assert d.max_score == r.max()
            if not d2.keep:
                assert (d2.max_score, d2.most_similar_index) == (r.max(), int(np.argmax(r)))
        idx.threshold = THR
    # rouge_score itself on a few long pairs
    for c in cands[3:7]:
        for i in rng.sample(range(len(pool)), 6):
            assert rouge_scorer._score_lcs(TOK(c), TOK(pool[i])).fmeasure == idx.scores(c)[i]


def test_no_tokens_and_empty():
    idx = RougeNoveltyIndex()
    d = idx.check("随便写一首诗")  # empty pool, no tokens
    assert (d.keep, d.reason, d.max_score, d.most_similar, d.top, d.mean) == (
        False,
        "rouge_no_tokens",
        0.0,
        None,
        None,
        None,
    )
    d = idx.offer("Write a poem about the sea.")
    assert d.keep and d.reason is None and d.top == [] and d.mean is None and len(idx) == 1
    for text in ("请写一首关于大海的诗。", "", "  ...!!  "):
        for ws in (True, False):
            d = idx.offer(text, with_stats=ws)
            assert (d.keep, d.reason, d.max_score) == (False, "rouge_no_tokens", 0.0)
    assert len(idx) == 1
    assert np.array_equal(idx.scores("中文"), np.zeros(1))
    keep_idx = RougeNoveltyIndex(on_no_tokens="keep")
    keep_idx.add(["Write a poem about the sea."])
    d = keep_idx.offer("请写一首关于大海的诗。")
    assert d.keep and d.reason == "rouge_no_tokens" and len(keep_idx) == 1  # kept, not added
    # token-less pool entries score 0 and never cause a division by zero
    idx.add(["这是中文", ""])
    assert len(idx) == 3 and idx.texts[1] == "这是中文"
    s = idx.scores("write a poem about the sea")
    assert s[1] == s[2] == 0.0 and s[0] == 1.0
    d = idx.check("write a poem about the sea")
    assert not d.keep and d.most_similar_index == 0 and d.mean == float(np.mean(s))
    with pytest.raises(ValueError):
        RougeNoveltyIndex(on_no_tokens="maybe")
    with pytest.raises(TypeError):
        idx.add("a single string")


def test_threshold_edge():
    """F == 0.7 exactly is kept; F == 0.7000000000000001 (rouge_score's float for 2*7/(7+13)) drops."""
    base = [f"t{i}" for i in range(30)]
    exact = (" ".join(base[:10]), " ".join(base[:7] + ["x1", "x2", "x3"]))  # L=7, m=n=10
    above = (" ".join(base[:7]), " ".join(base[:7] + [f"y{i}" for i in range(6)]))  # L=7, m=7, n=13
    for (p, c), expect_keep in ((exact, True), (above, False)):
        f = rouge_scorer._score_lcs(TOK(c), TOK(p)).fmeasure
        assert (f == 0.7) == expect_keep and (f > 0.7) != expect_keep
        for ws in (True, False):
            idx = RougeNoveltyIndex(threshold=0.7)
            idx.add(["unrelated words only", p])
            d = idx.check(c, with_stats=ws)
            assert d.keep == expect_keep
            if not expect_keep or ws:
                assert d.max_score == f and d.most_similar == p


def test_filter_progress_and_greedy_order():
    texts = [f"item number {i % 700} about topic {i % 13} and more words" for i in range(2100)]
    idx = RougeNoveltyIndex()
    with_bar = idx.filter(texts, with_stats=False)  # > 2000: rich progress bar path
    seq = RougeNoveltyIndex()
    assert [d.keep for d in with_bar] == [seq.offer(t, with_stats=False).keep for t in texts]
    assert idx.texts == seq.texts == [t for t, d in zip(texts, with_bar) if d.keep]


def test_top_indices_matches_argsort():
    rng = np.random.default_rng(0)
    for n in (1, 5, 11, 60, 500, 5000):
        for vals in (rng.random(n), rng.integers(0, 4, n) / 4.0, np.zeros(n)):
            assert np.array_equal(top_indices(vals), np.argsort(vals)[-10:][::-1])


def test_step_streams_in_batches_like_one_call_and_like_check(real, monkeypatch):
    """RougeNovelty.check_all over uneven successive batches == one call == check on each record in turn
    (sub-batches of 64 and threads on every sub-batch, so the in-batch greedy pass is exercised)."""
    from alpaca_data.filters.rouge import RougeNovelty

    monkeypatch.setattr(rouge_mod, "_SUB_BATCH", 64)
    monkeypatch.setattr(rouge_mod, "_PARALLEL_MIN_PAIRS", 1)
    texts = real["texts"][:1500]
    texts = texts + [t + " (copy 1)" for t in texts[:300]] + ["请写一首诗", ""]
    records = [{"instruction": t, "n": k} for k, t in enumerate(texts)]
    pool = real["texts"][1500:1600]

    def verdicts(step, calls):
        return [(v.reason, v.score, v.most_similar) for v in calls(step)]

    one = verdicts(RougeNovelty(pool=pool), lambda s: s.check_all(records, progress=False))
    cuts = [0, 1, 7, 300, 301, 1000, 1777, len(records)]
    batched = verdicts(RougeNovelty(pool=pool), lambda s: [v for a, b in zip(cuts, cuts[1:])
                                                           for v in s.check_all(records[a:b], progress=False)])
    each = verdicts(RougeNovelty(pool=pool), lambda s: [s.check(r) for r in records])
    assert one == batched == each
    assert 100 < sum(reason == "rouge_too_similar" for reason, _, _ in one) < len(records) - 100
    # the decisions are Alpaca's: the greedy reference over pool + kept
    ref = RefPool(pool + texts)
    kept = list(range(len(pool)))
    for k, (reason, score, most_similar) in enumerate(one):
        if not TOK(texts[k]):
            assert reason == "rouge_no_tokens"
            continue
        best, i = ref.best(texts[k], entries=kept)
        assert (reason is None) == (not best > THR)
        if reason:
            assert (score, most_similar) == (best, (pool + texts)[kept[i]])
        else:
            kept.append(len(pool) + k)
