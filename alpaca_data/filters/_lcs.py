"""Numba kernels for exact ROUGE-L (LCS) scoring of one candidate against a token pool.

Internal module used by :mod:`alpaca_data.filters.rouge`; nothing here is public API.

Two exact LCS algorithms are combined, both bit-parallel (Allison-Dix / Hyyro):

* **sparse, pool as bit-vector** -- every pool entry ``e`` owns a bit-vector ``V_e`` (one
  uint64 word per 64 tokens) and, per distinct token ``b``, a match mask ``M_e[b]`` stored in
  an inverted index (CSR postings ``token -> (entry, mask words)``).  Scanning the candidate's
  tokens in order, ``U = V & M[b]; V = (V + U) | (V - U)`` (multi-word add with carry).  A token
  that does not occur in ``e`` leaves ``V_e`` unchanged, so only the postings of the candidate's
  tokens are visited.  ``LCS = number of zero bits of V_e``.
* **dense, candidate as bit-vector** -- used for the not-yet-indexed tail of the pool and for the
  few pairs that survive the upper bounds in threshold-only mode: the candidate's match masks
  are built once, and each pool entry's tokens are scanned.

The F-measure is computed with exactly rouge_score's float64 formula and operation order:
``p = lcs / len(pool_entry); r = lcs / len(candidate); f = 2 * p * r / (p + r)`` (0.0 if p+r == 0).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.core import types
from numba.extending import intrinsic

_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_ONE = np.uint64(1)
_ZERO = np.uint64(0)
#: margin used with the (mathematical) upper bounds so float rounding can never prune a real hit
BOUND_EPS = 1e-9


@intrinsic
def _popcount(typingctx, x):
    if not isinstance(x, types.Integer):
        return None
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def _fmeasure(lcs, m_pool, n_cand):
    # identical to rouge_score: precision = lcs/len(prediction) (pool entry),
    # recall = lcs/len(target) (candidate), scoring.fmeasure(precision, recall)
    if m_pool == 0 or n_cand == 0:
        return 0.0
    p = lcs / m_pool
    r = lcs / n_cand
    if p + r > 0:
        return 2 * p * r / (p + r)
    return 0.0


# --------------------------------------------------------------------------- index build
@njit(cache=True, nogil=True)
def build_postings(flat, off, K, nvocab):
    """Inverted index over pool entries ``0..K-1`` (token ids ``flat[off[e]:off[e+1]]``).

    Entries of <= 64 tokens ("short") get one posting ``(entry, match mask)`` per distinct token in
    ``sptr/s_ent/s_mask``; longer entries get ``(entry, offset of nwords[e] mask words in lm)`` in
    ``lptr/l_ent/l_moff/lm``.  Postings are in ascending entry order per token.  ``woff`` are the
    word offsets of the long entries' bit-vectors (``nwords[e] == 0`` for short entries).
    """
    scnt = np.zeros(nvocab + 1, np.int64)
    lcnt = np.zeros(nvocab + 1, np.int64)
    wcnt = np.zeros(nvocab + 1, np.int64)
    stamp = np.full(nvocab, -1, np.int64)
    nwords = np.zeros(K, np.int32)
    woff = np.empty(K + 1, np.int64)
    wo = 0
    for e in range(K):
        m = off[e + 1] - off[e]
        nw = (m + 63) // 64 if m > 64 else 0
        nwords[e] = nw
        woff[e] = wo
        wo += nw
        for i in range(off[e], off[e + 1]):
            t = flat[i]
            if stamp[t] != e:
                stamp[t] = e
                if nw == 0:
                    scnt[t + 1] += 1
                else:
                    lcnt[t + 1] += 1
                    wcnt[t + 1] += nw
    woff[K] = wo
    for t in range(nvocab):
        scnt[t + 1] += scnt[t]
        lcnt[t + 1] += lcnt[t]
        wcnt[t + 1] += wcnt[t]
    sptr = scnt
    lptr = lcnt
    s_ent = np.empty(sptr[nvocab], np.int32)
    s_mask = np.zeros(sptr[nvocab], np.uint64)
    l_ent = np.empty(lptr[nvocab], np.int32)
    l_moff = np.empty(lptr[nvocab], np.int64)
    lm = np.zeros(wcnt[nvocab], np.uint64)
    sfill = sptr[:-1].copy()
    lfill = lptr[:-1].copy()
    wfill = wcnt[:-1].copy()
    loc = np.empty(nvocab, np.int64)
    stamp[:] = -1
    for e in range(K):
        base = off[e]
        nw = nwords[e]
        for i in range(off[e], off[e + 1]):
            t = flat[i]
            pos = i - base
            bit = _ONE << np.uint64(pos & 63)
            if nw == 0:
                if stamp[t] != e:
                    stamp[t] = e
                    k = sfill[t]
                    sfill[t] += 1
                    s_ent[k] = e
                    loc[t] = k
                s_mask[loc[t]] |= bit
            else:
                if stamp[t] != e:
                    stamp[t] = e
                    k = lfill[t]
                    lfill[t] += 1
                    l_ent[k] = e
                    l_moff[k] = wfill[t]
                    wfill[t] += nw
                    loc[t] = k
                lm[l_moff[loc[t]] + pos // 64] |= bit
    return sptr, s_ent, s_mask, lptr, l_ent, l_moff, lm, nwords, woff


# --------------------------------------------------------------------------- candidate prep
@njit(cache=True, nogil=True)
def prep_candidate(cand, slot_of):
    """Candidate match masks ``CM[slot, word]``; sets ``slot_of[token] = slot`` (caller resets)."""
    n = cand.shape[0]
    nwc = (n + 63) // 64
    CM = np.zeros((max(n, 1), max(nwc, 1)), np.uint64)
    ns = 0
    for i in range(n):
        t = cand[i]
        if t < 0:
            continue
        s = slot_of[t]
        if s < 0:
            s = ns
            slot_of[t] = s
            ns += 1
        CM[s, i // 64] |= _ONE << np.uint64(i & 63)
    return CM


@njit(cache=True, nogil=True)
def reset_slots(cand, slot_of):
    for i in range(cand.shape[0]):
        t = cand[i]
        if t >= 0:
            slot_of[t] = -1


@njit(cache=True, nogil=True, inline="always")
def _dense_lcs(flat, lo, hi, slot_of, CM, nwc, Vc):
    """LCS of pool tokens ``flat[lo:hi]`` with the candidate encoded in ``CM`` (candidate bit-vector)."""
    if nwc == 1:
        v = _ALL
        for i in range(lo, hi):
            s = slot_of[flat[i]]
            if s >= 0:
                u = v & CM[s, 0]
                v = (v + u) | (v - u)
        return 64 - np.int64(_popcount(v))
    for w in range(nwc):
        Vc[w] = _ALL
    for i in range(lo, hi):
        s = slot_of[flat[i]]
        if s >= 0:
            carry = _ZERO
            for w in range(nwc):
                v = Vc[w]
                u = v & CM[s, w]
                s1 = v + u
                c1 = s1 < v
                s2 = s1 + carry
                c2 = s2 < s1
                Vc[w] = s2 | (v & ~u)
                carry = _ONE if (c1 or c2) else _ZERO
    z = 0
    for w in range(nwc):
        z += 64 - np.int64(_popcount(Vc[w]))
    return z


@njit(cache=True, nogil=True, inline="always")
def _posting_range(ptr, ents, b, lo, hi, K):
    s = ptr[b]
    end = ptr[b + 1]
    if s == end:
        return s, end
    if lo > 0:
        s = s + np.searchsorted(ents[s:end], lo)
    if hi < K:
        end = s + np.searchsorted(ents[s:end], hi)
    return s, end


@njit(cache=True, nogil=True, inline="always")
def _long_step(VL, vo, nw, lm, mo):
    carry = _ZERO
    for w in range(nw):
        v = VL[vo + w]
        u = v & lm[mo + w]
        s1 = v + u
        c1 = s1 < v
        s2 = s1 + carry
        c2 = s2 < s1
        VL[vo + w] = s2 | (v & ~u)  # (V + U) | (V - U), and V - U == V & ~U since U is a subset of V
        carry = _ONE if (c1 or c2) else _ZERO


# --------------------------------------------------------------------------- full score vectors
@njit(cache=True, nogil=True)
def stats_chunk(
    c,
    nchunks,
    cand,
    n,
    flat,
    off,
    K,
    N,
    sptr,
    s_ent,
    s_mask,
    lptr,
    l_ent,
    l_moff,
    lm,
    nwords,
    woff,
    V1,
    VL,
    slot_of,
    CM,
    out,
):
    """Exact F-measures of candidate ``cand`` vs pool entries of chunk ``c`` (of ``nchunks``) into ``out``."""
    nvoc = sptr.shape[0] - 1
    lo = K * c // nchunks
    hi = K * (c + 1) // nchunks
    for e in range(lo, hi):
        V1[e] = _ALL
    for w in range(woff[lo], woff[hi]):
        VL[w] = _ALL
    for j in range(n):
        b = cand[j]
        if b < 0 or b >= nvoc:
            continue
        s, end = _posting_range(sptr, s_ent, b, lo, hi, K)
        for k in range(s, end):
            e = s_ent[k]
            v = V1[e]
            u = v & s_mask[k]
            V1[e] = (v + u) | (v - u)
        s, end = _posting_range(lptr, l_ent, b, lo, hi, K)
        for k in range(s, end):
            e = l_ent[k]
            _long_step(VL, woff[e], nwords[e], lm, l_moff[k])
    for e in range(lo, hi):
        nw = nwords[e]
        if nw == 0:
            v = V1[e]
            if v != _ALL:
                out[e] = _fmeasure(64 - np.int64(_popcount(v)), off[e + 1] - off[e], n)
        else:
            vo = woff[e]
            z = 0
            for w in range(nw):
                z += 64 - np.int64(_popcount(VL[vo + w]))
            if z > 0:
                out[e] = _fmeasure(z, off[e + 1] - off[e], n)
    # not-yet-indexed tail: dense scan, candidate as bit-vector
    nwc = (n + 63) // 64
    Vc = np.empty(max(nwc, 1), np.uint64)
    tlo = K + (N - K) * c // nchunks
    thi = K + (N - K) * (c + 1) // nchunks
    for e in range(tlo, thi):
        m = off[e + 1] - off[e]
        if m == 0:
            continue
        z = _dense_lcs(flat, off[e], off[e + 1], slot_of, CM, nwc, Vc)
        out[e] = _fmeasure(z, m, n)


# --------------------------------------------------------------------------- threshold-only (bounds)
@njit(cache=True, nogil=True)
def probe_plan(cand, sptr, lptr, thr_lo):
    """Pick the candidate tokens to probe (prefix filtering on the inverted index).

    The most frequent candidate tokens (by pool document frequency) are skipped as long as an
    entry sharing *only* skipped tokens provably cannot exceed the threshold: with ``s`` skipped
    token occurrences, such an entry has LCS <= min(s, m) and F <= 2*min(s, m)/(m+n) <= 2s/(s+n).
    """
    n = cand.shape[0]
    nvoc = sptr.shape[0] - 1
    toks = np.empty(n, np.int64)
    cnts = np.empty(n, np.int64)
    dfs = np.empty(n, np.int64)
    nd = 0
    for i in range(n):
        t = cand[i]
        if t < 0 or t >= nvoc:
            continue
        found = -1
        for q in range(nd):
            if toks[q] == t:
                found = q
                break
        if found >= 0:
            cnts[found] += 1
        else:
            toks[nd] = t
            cnts[nd] = 1
            dfs[nd] = (sptr[t + 1] - sptr[t]) + (lptr[t + 1] - lptr[t])
            nd += 1
    order = np.argsort(-dfs[:nd], kind="mergesort")
    s = 0
    q0 = 0
    while q0 < nd:
        q = order[q0]
        s2 = s + cnts[q]
        if 2.0 * s2 / (s2 + n) <= thr_lo:
            s = s2
            q0 += 1
        else:
            break
    probe_t = np.empty(nd - q0, np.int64)
    probe_c = np.empty(nd - q0, np.int64)
    for i in range(q0, nd):
        probe_t[i - q0] = toks[order[i]]
        probe_c[i - q0] = cnts[order[i]]
    return probe_t, probe_c, s


@njit(cache=True, nogil=True)
def best_chunk(
    c,
    nchunks,
    n,
    probe_t,
    probe_c,
    s_skip,
    thr_lo,
    flat,
    off,
    K,
    N,
    sptr,
    s_ent,
    s_mask,
    lptr,
    l_ent,
    l_moff,
    lm,
    nwords,
    ov,
    slot_of,
    CM,
    res_f,
    res_e,
    res_cnt,
):
    """Threshold-only mode: best (F, entry) among chunk ``c``'s pairs whose upper bound exceeds
    ``thr_lo`` (length bound and token-multiset-overlap bound ``2*min(ov+s_skip, m, n)/(m+n)``)."""
    lo = K * c // nchunks
    hi = K * (c + 1) // nchunks
    for e in range(lo, hi):
        ov[e] = 0
    for j in range(probe_t.shape[0]):
        b = probe_t[j]
        cb = probe_c[j]
        s, end = _posting_range(sptr, s_ent, b, lo, hi, K)
        for k in range(s, end):
            e = s_ent[k]
            ov[e] += min(cb, np.int64(_popcount(s_mask[k])))
        s, end = _posting_range(lptr, l_ent, b, lo, hi, K)
        for k in range(s, end):
            e = l_ent[k]
            mo = l_moff[k]
            ce = 0
            for w in range(nwords[e]):
                ce += np.int64(_popcount(lm[mo + w]))
            ov[e] += min(cb, ce)
    nwc = (n + 63) // 64
    Vc = np.empty(max(nwc, 1), np.uint64)
    best = -1.0
    best_e = -1
    nev = 0
    for e in range(lo, hi):
        o = ov[e]
        if o == 0:  # shares only skipped tokens: bound <= 2s/(s+n) <= thr_lo by construction
            continue
        m = off[e + 1] - off[e]
        lub = min(o + s_skip, m, n)
        if 2.0 * lub / (m + n) > thr_lo:
            z = _dense_lcs(flat, off[e], off[e + 1], slot_of, CM, nwc, Vc)
            f = _fmeasure(z, m, n)
            nev += 1
            if f > best:
                best = f
                best_e = e
    tlo = K + (N - K) * c // nchunks
    thi = K + (N - K) * (c + 1) // nchunks
    for e in range(tlo, thi):
        m = off[e + 1] - off[e]
        if m == 0:
            continue
        if 2.0 * min(m, n) / (m + n) > thr_lo:
            z = _dense_lcs(flat, off[e], off[e + 1], slot_of, CM, nwc, Vc)
            f = _fmeasure(z, m, n)
            nev += 1
            if f > best:
                best = f
                best_e = e
    res_f[c] = best
    res_e[c] = best_e
    res_cnt[c] = nev


# --------------------------------------------------------------------------- one-call serial entry points
@njit(cache=True, nogil=True)
def stats_serial(
    cand, flat, off, K, N, sptr, s_ent, s_mask, lptr, l_ent, l_moff, lm, nwords, woff, V1, VL, slot_of, out
):
    """prep + :func:`stats_chunk` over the whole pool + reset, in one dispatch."""
    CM = prep_candidate(cand, slot_of)
    stats_chunk(
        0,
        1,
        cand,
        cand.shape[0],
        flat,
        off,
        K,
        N,
        sptr,
        s_ent,
        s_mask,
        lptr,
        l_ent,
        l_moff,
        lm,
        nwords,
        woff,
        V1,
        VL,
        slot_of,
        CM,
        out,
    )
    reset_slots(cand, slot_of)


@njit(cache=True, nogil=True)
def best_serial(
    cand,
    thr_lo,
    flat,
    off,
    K,
    N,
    sptr,
    s_ent,
    s_mask,
    lptr,
    l_ent,
    l_moff,
    lm,
    nwords,
    ov,
    slot_of,
    res_f,
    res_e,
    res_cnt,
):
    """probe plan + prep + :func:`best_chunk` over the whole pool + reset, in one dispatch."""
    probe_t, probe_c, s_skip = probe_plan(cand, sptr, lptr, thr_lo)
    CM = prep_candidate(cand, slot_of)
    best_chunk(
        0,
        1,
        cand.shape[0],
        probe_t,
        probe_c,
        s_skip,
        thr_lo,
        flat,
        off,
        K,
        N,
        sptr,
        s_ent,
        s_mask,
        lptr,
        l_ent,
        l_moff,
        lm,
        nwords,
        ov,
        slot_of,
        CM,
        res_f,
        res_e,
        res_cnt,
    )
    reset_slots(cand, slot_of)
