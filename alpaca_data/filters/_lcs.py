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
  few pairs that survive the prefix filter and bounds in threshold-only mode (prefix index below): the candidate's match masks
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



# --------------------------------------------------------------------------- threshold-only: prefix index
# Prefix filtering with a positional overlap bound (PPJoin+, Xiao et al. 2008) on token multisets under one
# global order.  A pair can score F > thr_lo only if its multiset overlap ov satisfies 2*ov/(m+ov) > thr_lo
# on both sides (LCS <= ov, F <= 2*min(ov, m, n)/(m+n)), i.e. ov >= alpha(m) and ov >= alpha(n) with
# alpha(x) = floor(thr_lo*x/(2-thr_lo))+1; then the first x - alpha(x) + 1 token occurrences of each side, in
# the global order, share a token.  The order is "larger token id first" (ids are given in first-seen order,
# so late, rare tokens come first); an unknown candidate token (id -1) counts as larger than every id.
# Entries post the distinct tokens of their prefix -- (entry, end position of the token's occurrences in the
# entry's order, their count) -- in append-only posting lists of BLOCK-entry blocks, so a pool grows without
# rebuilds.  A candidate probes its prefix tokens in order; for an entry met at tokens t1 > t2 > ... the
# common occurrences of every token up to the last one met are counted exactly (an earlier common token is
# in both prefixes), and the rest is at most min(occurrences after it in the entry, in the candidate): only
# entries whose overlap bound passes get an exact LCS.  Which pairs are verified depends only on the two
# texts and the ids, never on batching or on the rest of the pool.
BLOCK = 8
_UNKNOWN = np.int64(1) << 40


@njit(cache=True, nogil=True)
def prefix_len(n, thr_lo):
    """Token occurrences (in the global order) that must be indexed / probed for a text of ``n`` tokens."""
    if n == 0 or thr_lo >= 1.0:
        return 0
    alpha = np.int64(np.floor(thr_lo * n / (2.0 - thr_lo))) + 1 if thr_lo > 0 else np.int64(1)
    if alpha < 1:
        alpha = 1
    p = n - alpha + 1
    if p < 1:
        p = 1
    return p


@njit(cache=True, nogil=True)
def _prefix_tokens(ids, thr_lo):
    """The distinct known tokens met in the first ``prefix_len`` occurrences (ids descending, unknown
    first), each with the end position of its occurrences in that order and their count."""
    n = ids.shape[0]
    p = prefix_len(n, thr_lo)
    key = np.empty(n, np.int64)
    for i in range(n):
        t = ids[i]
        key[i] = -(np.int64(t) if t >= 0 else _UNKNOWN)
    key.sort()
    toks = np.empty(p, np.int64)
    ends = np.empty(p, np.int64)
    cnts = np.empty(p, np.int64)
    k = 0
    i = 0
    while i < p:
        j = i + 1
        while j < n and key[j] == key[i]:
            j += 1
        if -key[i] != _UNKNOWN:
            toks[k] = -key[i]
            ends[k] = j
            cnts[k] = j - i
            k += 1
        i = j
    return toks[:k], ends[:k], cnts[:k]


@njit(cache=True, nogil=True)
def px_insert(e_lo, e_hi, flat, off, thr_lo, head, tail, cnt, blk_ent, blk_end, blk_cnt, blk_next, nblk):
    """Post the prefix tokens of entries ``e_lo..e_hi-1``; stops before an entry that might not fit in the
    block arrays.  Returns (first entry not posted, blocks used)."""
    cap = blk_next.shape[0]
    for e in range(e_lo, e_hi):
        toks, ends, cnts = _prefix_tokens(flat[off[e]:off[e + 1]], thr_lo)
        if nblk + toks.shape[0] > cap:
            return e, nblk
        for q in range(toks.shape[0]):
            t = toks[q]
            c = cnt[t]
            if c % BLOCK == 0:
                b = nblk
                nblk += 1
                blk_next[b] = -1
                if c == 0:
                    head[t] = b
                else:
                    blk_next[tail[t]] = b
                tail[t] = b
            k = tail[t] * BLOCK + c % BLOCK
            blk_ent[k] = e
            blk_end[k] = ends[q]
            blk_cnt[k] = cnts[q]
            cnt[t] = c + 1
    return e_hi, nblk


@njit(cache=True, nogil=True)
def px_reset(flat, off, e_lo, e_hi, cnt):
    """Empty the posting lists of the tokens of entries ``e_lo..e_hi-1`` (a local index, reused)."""
    for i in range(off[e_lo], off[e_hi]):
        cnt[flat[i]] = 0


@njit(cache=True, nogil=True)
def px_query(cand, thr_lo, flat, off, head, cnt, blk_ent, blk_end, blk_cnt, blk_next, stamp, acc, rem, touched,
             stamp_val, slot_of):
    """Best exact (F, entry) over the entries of the index whose bounds exceed ``thr_lo`` (first entry on
    ties); (-1.0, -1) when none.  Exact whenever some F > thr_lo."""
    n = cand.shape[0]
    best = -1.0
    best_e = -1
    toks, ends, cnts = _prefix_tokens(cand, thr_lo)
    nvoc = cnt.shape[0]
    nt = 0
    for q in range(toks.shape[0]):
        t = toks[q]
        if t >= nvoc:
            continue
        c = cnt[t]
        b = head[t]
        ey = ends[q]
        cy = cnts[q]
        i = 0
        while i < c:
            k = b * BLOCK + i % BLOCK
            i += 1
            if i % BLOCK == 0:
                b = blk_next[b]
            e = blk_ent[k]
            if stamp[e] != stamp_val:
                stamp[e] = stamp_val
                acc[e] = 0
                touched[nt] = e
                nt += 1
            acc[e] += min(blk_cnt[k], cy)
            rem[e] = min(off[e + 1] - off[e] - blk_end[k], n - ey)
    if nt == 0:
        return best, best_e
    CM = prep_candidate(cand, slot_of)
    nwc = (n + 63) // 64
    Vc = np.empty(max(nwc, 1), np.uint64)
    for q in range(nt):
        e = touched[q]
        m = off[e + 1] - off[e]
        lub = min(acc[e] + rem[e], m, n)
        if 2.0 * lub / (m + n) > thr_lo:
            z = _dense_lcs(flat, off[e], off[e + 1], slot_of, CM, nwc, Vc)
            f = _fmeasure(z, m, n)
            if f > best or (f == best and e < best_e):
                best = f
                best_e = e
    reset_slots(cand, slot_of)
    return best, best_e


@njit(cache=True, nogil=True)
def px_query_many(j_lo, j_hi, cflat, coff, thr_lo, flat, off, head, cnt, blk_ent, blk_end, blk_cnt, blk_next,
                  stamp, acc, rem, touched, stamp_base, slot_of, out_f, out_e):
    """:func:`px_query` for candidates ``j_lo..j_hi-1`` of a batch (read-only on the index)."""
    for j in range(j_lo, j_hi):
        f, e = px_query(cflat[coff[j]:coff[j + 1]], thr_lo, flat, off, head, cnt, blk_ent, blk_end, blk_cnt,
                        blk_next, stamp, acc, rem, touched, stamp_base + j, slot_of)
        out_f[j] = f
        out_e[j] = e


@njit(cache=True, nogil=True)
def px_batch_greedy(cflat, coff, thr, thr_lo, keep_no_tokens, in_f, in_e, flat, off, N, nflat, head, tail, cnt,
                    blk_ent, blk_end, blk_cnt, blk_next, stamp, acc, rem, touched, stamp_base, slot_of, out_keep,
                    out_f, out_e):
    """The greedy pass over a batch, in order: each candidate's best against the pool before the batch
    (``in_f/in_e``, from :func:`px_query_many`) is combined with its best against the candidates kept
    earlier in the batch (a local prefix index ``head/tail/cnt/blk_*``, entries N0.., emptied by the
    caller; ties go to the pool, the earlier entries); kept candidates are appended to ``flat/off``
    (capacity ensured by the caller).  Returns (entries, flat length)."""
    nb = coff.shape[0] - 1
    nblk = 0
    for j in range(nb):
        cand = cflat[coff[j]:coff[j + 1]]
        n = cand.shape[0]
        if n == 0:
            out_keep[j] = keep_no_tokens
            out_f[j] = 0.0
            out_e[j] = -1
            continue
        best = in_f[j]
        be = in_e[j]
        f, e = px_query(cand, thr_lo, flat, off, head, cnt, blk_ent, blk_end, blk_cnt, blk_next, stamp, acc, rem,
                        touched, stamp_base + j, slot_of)
        if e >= 0 and (be < 0 or f > best):
            best = f
            be = e
        if be < 0:
            best = 0.0
        keep = not (best > thr)
        out_keep[j] = keep
        out_f[j] = best
        out_e[j] = be
        if keep:
            flat[nflat:nflat + n] = cand
            nflat += n
            off[N + 1] = nflat
            _, nblk = px_insert(N, N + 1, flat, off, thr_lo, head, tail, cnt, blk_ent, blk_end, blk_cnt, blk_next,
                                nblk)
            N += 1
    return N, nflat


# --------------------------------------------------------------------------- MinHash (filters.dedup)
@njit(cache=True, nogil=True)
def minhash_rows(codes, offs, lo, hi, ngram, a, b, out):
    """MinHash rows ``lo..hi-1`` of texts given as code points ``codes[offs[r]:offs[r+1]]``: exactly
    ``filters.dedup._minhash_numpy`` (length-seeded polynomial n-gram hash, MurmurHash3 fmix64, high 32 bits,
    ``a * h + b mod 2**32``, minimum per permutation)."""
    num_perm = a.shape[0]
    mix1 = np.uint64(0xFF51AFD7ED558CCD)
    mix2 = np.uint64(0xC4CEB9FE1A85EC53)
    s33 = np.uint64(33)
    s32 = np.uint64(32)
    low = np.uint64(0xFFFFFFFF)
    poly = np.uint64(0x100000001B3)
    a64 = a.astype(np.uint64)
    b64 = b.astype(np.uint64)
    sig = np.empty(num_perm, np.uint64)
    for row in range(lo, hi):
        start = offs[row]
        length = offs[row + 1] - start
        count = max(length - ngram + 1, 1)
        width = min(ngram, length)
        for p in range(num_perm):
            sig[p] = low
        for i in range(count):
            h = np.uint64(width)
            for k in range(width):
                h = h * poly + np.uint64(codes[start + i + k])
            h ^= h >> s33
            h *= mix1
            h ^= h >> s33
            h *= mix2
            h ^= h >> s33
            x = h >> s32
            for p in range(num_perm):
                v = (a64[p] * x + b64[p]) & low
                if v < sig[p]:
                    sig[p] = v
        for p in range(num_perm):
            out[row, p] = np.uint32(sig[p])
