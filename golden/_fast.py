"""numba kernels for the golden model's hot loops (bit-identical to the numpy references).

Each kernel here has a readable numpy counterpart (``exp.hls_exp``, ``linear.linear_ref``,
``attention.qk_scores`` ...) and a test that the two agree on random inputs including
extreme and wrapping values.  Rules used to stay exact:

* int64 throughout (numba promotes int64 with uint64 to float64, so no uint64 appears);
  fm_t × fm_t products fit in 63 bits.
* Linear-unit products x·w (32 × 16 bits) are formed in float64, where they are exact
  (< 2^53); ``floor(x * (w·2^-s))`` is then exactly ⌊x·w / 2^s⌋, and sums of up to 2^10 such
  terms (< 2^43) stay exact as well.
* The wide products inside ``hls::exp`` (up to 100 bits) are split into 31-bit limbs.
"""

from __future__ import annotations


import numpy as np
from numba import njit

from moevit.golden.exp import TABLES

_T1 = TABLES["T1"].astype(np.int64)
_T2 = TABLES["T2"].astype(np.int64)
_T3 = TABLES["T3"].astype(np.int64)
_T4H = TABLES["T4h"].astype(np.int64)
_T4L = TABLES["T4l"].astype(np.int64)
_TL = TABLES["TL"].astype(np.int64)

_M31 = (1 << 31) - 1
_ONE = 1 << 22
_FM_MIN = -(1 << 31)


@njit(cache=True, inline="always")
def wrap32(v):
    """Signed 32-bit wrap of an int64."""
    return ((v + 2147483648) & 4294967295) - 2147483648


@njit(cache=True, inline="always")
def _mul_shift(a, b, s):
    """floor(a*b / 2^s) for 0 <= a, b < 2^62 and 31 <= s < 62, when the result fits int64."""
    a0 = a & _M31
    a1 = a >> 31
    b0 = b & _M31
    b1 = b >> 31
    lo = a0 * b0
    t = a1 * b0 + a0 * b1 + (lo >> 31)
    w1 = t & _M31
    top = a1 * b1 + (t >> 31)  # product = top*2^62 + w1*2^31 + (lo & M31)
    return (top << (62 - s)) + (w1 >> (s - 31))


@njit(cache=True)
def exp_scalar(x):
    """hls::exp on one fm_t raw value (spec Appendix B); same result as exp.hls_exp."""
    xl = x * 2
    if xl < -(1 << 27) or xl >= (1 << 27):
        return 2147483647 if x >= 0 else 0
    if (xl >> 23) == 15 and (xl & ((1 << 23) - 1)) >= 0x78A014:
        return 2147483647
    u = xl & ((1 << 47) - 1)
    sign = 1 if xl < 0 else 0
    ind1 = (sign << 7) | ((u >> 20) & 0x7F)
    ind2 = (u >> 12) & 0xFF
    ind3 = (u >> 7) & 0x1F
    ind4 = (u >> 4) & 0x7
    lsb = u & 0xF
    tl = _TL[lsb]
    m = ((_T4H[ind4] << 3) + (tl >> 5) + ind4 * lsb) & 0x3FF
    a = ((u & 0x7F) << 35) + (m << 16) + ((tl & 31) << 11) + _T4L[ind4]
    b = (ind3 << 39) + _T3[ind3]
    c = (_mul_shift(b, a, 55) + (b << 3) + a) & ((1 << 48) - 1)
    d = _T2[ind2] + (ind2 << 41)
    ecomb = ((_mul_shift(d, c, 52) + (d << 6) + c) >> 6) & ((1 << 50) - 1)
    t1 = _T1[ind1]
    y27 = _mul_shift(t1, ecomb, 52) + t1
    y23 = (y27 >> 4) & ((1 << 46) - 1)
    if y23 > (1 << 32) - 1:
        y23 = (1 << 32) - 1
    return y23 >> 1


@njit(cache=True)
def exp_array(x):
    """exp_scalar over a flat int64 array."""
    out = np.empty(x.size, dtype=np.int64)
    for i in range(x.size):
        out[i] = exp_scalar(x[i])
    return out


@njit(cache=True, inline="always")
def recip_scalar(x):
    """hls::recip: 0 for 0, else wrap32(trunc0(2^44 / x))."""
    if x == 0:
        return 0
    q = (1 << 44) // abs(x)
    return wrap32(-q if x < 0 else q)


@njit(cache=True, inline="always")
def softmax_step(total, bias, s):
    """One online-softmax update (spec §4.5.3); returns (total, bias)."""
    d = bias - s
    if d < 0:
        e = exp_scalar(wrap32(d))
        return wrap32(((total * e) >> 22) + _ONE), s
    e = exp_scalar(wrap32(-d))
    return wrap32(total + e), bias


# ---------------------------------------------------------------------------- linear unit
@njit(cache=True, nogil=True)
def linear_sums(x, wT, rows):
    """S[r][o] = Σ_i floor(x[rows[r], i] * wT[i, o]) as int64 (no bias, no wrap).

    ``wT`` is the float64 weight matrix [in][out] already scaled by 2^-shift, so every
    product is exact and the floor is the hardware's per-product floor.  Two rows and four
    inputs per pass (each weight load serves 2 products, each accumulator update 4); the
    sums are exact integers, so their order does not matter.
    """
    n = rows.size
    nin, nout = wT.shape
    out = np.empty((n, nout), dtype=np.int64)
    a0 = np.empty(nout, dtype=np.float64)
    a1 = np.empty(nout, dtype=np.float64)
    for r in range(0, n, 2):
        t0 = rows[r]
        t1 = rows[r + 1] if r + 1 < n else t0
        a0[:] = 0.0
        a1[:] = 0.0
        i = 0
        while i + 4 <= nin:
            x0 = np.float64(x[t0, i])
            x1 = np.float64(x[t0, i + 1])
            x2 = np.float64(x[t0, i + 2])
            x3 = np.float64(x[t0, i + 3])
            y0 = np.float64(x[t1, i])
            y1 = np.float64(x[t1, i + 1])
            y2 = np.float64(x[t1, i + 2])
            y3 = np.float64(x[t1, i + 3])
            for o in range(nout):
                w0 = wT[i, o]
                w1 = wT[i + 1, o]
                w2 = wT[i + 2, o]
                w3 = wT[i + 3, o]
                a0[o] += (np.floor(x0 * w0) + np.floor(x1 * w1)) + \
                    (np.floor(x2 * w2) + np.floor(x3 * w3))
                a1[o] += (np.floor(y0 * w0) + np.floor(y1 * w1)) + \
                    (np.floor(y2 * w2) + np.floor(y3 * w3))
            i += 4
        while i < nin:
            x0 = np.float64(x[t0, i])
            y0 = np.float64(x[t1, i])
            for o in range(nout):
                a0[o] += np.floor(x0 * wT[i, o])
                a1[o] += np.floor(y0 * wT[i, o])
            i += 1
        for o in range(nout):
            out[r, o] = np.int64(a0[o])
            if r + 1 < n:
                out[r + 1, o] = np.int64(a1[o])
    return out


# ---------------------------------------------------------------------------- attention
@njit(cache=True, nogil=True)
def qk_scores(q, k, heads, head_dim, block, shift):
    """Raw scores [Tq, Tk, heads], identical to attention.qk_scores."""
    T, D = q.shape
    Tk = k.shape[0]
    out = np.empty((T, Tk, heads), dtype=np.int64)
    for qi in range(T):
        for ki in range(Tk):
            for h in range(heads):
                acc = 0
                for b0 in range(h * head_dim, (h + 1) * head_dim, block):
                    blk = 0
                    for d in range(b0, b0 + block):
                        blk += (q[qi, d] * k[ki, d]) >> 22
                    acc += wrap32(blk) >> shift
                out[qi, ki, h] = wrap32(acc)
    return out


@njit(cache=True, nogil=True)
def softmax_stats(s, order):
    """(recip, max) [T, heads] visiting keys of row q in order[q] (identical to attention's)."""
    T, Tk, H = s.shape
    recip = np.empty((T, H), dtype=np.int64)
    mx = np.empty((T, H), dtype=np.int64)
    for qi in range(T):
        for h in range(H):
            total = 0
            bias = _FM_MIN
            for j in range(Tk):
                total, bias = softmax_step(total, bias, s[qi, order[qi, j], h])
            recip[qi, h] = recip_scalar(total)
            mx[qi, h] = bias
    return recip, mx


@njit(cache=True, nogil=True)
def attention_av(v, s, recip, mx, head_dim):
    """Softmax·V [T, D], identical to attention.attention_av."""
    Tk, D = v.shape
    T, _, H = s.shape
    out = np.empty((T, D), dtype=np.int64)
    for qi in range(T):
        acc = np.zeros(D, dtype=np.int64)
        for h in range(H):
            r = recip[qi, h]
            m = mx[qi, h]
            for ki in range(Tk):
                a = wrap32((exp_scalar(wrap32(s[qi, ki, h] - m)) * r) >> 22)
                for d in range(h * head_dim, (h + 1) * head_dim):
                    acc[d] += (v[ki, d] * a) >> 22
        for d in range(D):
            out[qi, d] = wrap32(acc[d])
    return out


@njit(cache=True, nogil=True)
def qk_scores_split(q, kT, heads, head_dim, block, shift):
    """Same result as :func:`qk_scores`, vectorised over keys with exact float64 products.

    With q = qh·2^22 + ql (0 <= ql < 2^22): ⌊q·k / 2^22⌋ = qh·k + ⌊ql·k·2^-22⌋, where
    |qh·k| <= 2^40 and |ql·k| < 2^53 are exact in float64, and so are block sums of 8 such
    terms.  ``kT`` is K transposed [D, Tk].
    """
    T, D = q.shape
    Tk = kT.shape[1]
    kf = kT.astype(np.float64)
    out = np.empty((T, Tk, heads), dtype=np.int64)
    blk = np.empty(Tk, dtype=np.float64)
    acc = np.empty(Tk, dtype=np.int64)
    scale = 2.0 ** -22
    for qi in range(T):
        for h in range(heads):
            acc[:] = 0
            for b0 in range(h * head_dim, (h + 1) * head_dim, block):
                blk[:] = 0.0
                for d in range(b0, b0 + block):
                    qv = q[qi, d]
                    qh = np.float64(qv >> 22)
                    ql = np.float64(qv & 4194303) * scale
                    for ki in range(Tk):
                        kv = kf[d, ki]
                        blk[ki] += qh * kv + np.floor(ql * kv)
                for ki in range(Tk):
                    acc[ki] += wrap32(np.int64(blk[ki])) >> shift
            for ki in range(Tk):
                out[qi, ki, h] = wrap32(acc[ki])
    return out


@njit(cache=True, nogil=True)
def attention_weights_split(s, recip, mx):
    """A = wrap32(⌊hls_exp(wrap32(s - max))·recip / 2^22⌋) split as A = ah·2^22 + al·2^22
    with ah = A >> 22 and al = (A mod 2^22)·2^-22, both float64 [T, heads, Tk] (exact)."""
    T, Tk, H = s.shape
    ah = np.empty((T, H, Tk), dtype=np.float64)
    al = np.empty((T, H, Tk), dtype=np.float64)
    scale = 2.0 ** -22
    for qi in range(T):
        for h in range(H):
            r = recip[qi, h]
            m = mx[qi, h]
            for ki in range(Tk):
                a = wrap32((exp_scalar(wrap32(s[qi, ki, h] - m)) * r) >> 22)
                ah[qi, h, ki] = np.float64(a >> 22)
                al[qi, h, ki] = np.float64(a & 4194303) * scale
    return ah, al


@njit(cache=True, nogil=True)
def av_from_split(vf, ah, al, head_dim):
    """out[q][d] = wrap32(Σ_k ⌊V[k][d]·A[q][k][h(d)] / 2^22⌋) from the split weights:
    ⌊V·A / 2^22⌋ = V·ah + ⌊V·al⌋, with |V·ah| <= 2^40 and |V|·al·2^22 < 2^53 exact in
    float64 (sums over keys stay below 2^48).  Two query rows per pass."""
    Tk, D = vf.shape
    T, H, _ = ah.shape
    out = np.empty((T, D), dtype=np.int64)
    acc0 = np.empty(D, dtype=np.float64)
    acc1 = np.empty(D, dtype=np.float64)
    for q0 in range(0, T, 2):
        q1 = q0 + 1 if q0 + 1 < T else q0
        acc0[:] = 0.0
        acc1[:] = 0.0
        for h in range(H):
            for ki in range(Tk):
                x0 = ah[q0, h, ki]
                x1 = al[q0, h, ki]
                y0 = ah[q1, h, ki]
                y1 = al[q1, h, ki]
                for d in range(h * head_dim, (h + 1) * head_dim):
                    vv = vf[ki, d]
                    acc0[d] += vv * x0 + np.floor(vv * x1)
                    acc1[d] += vv * y0 + np.floor(vv * y1)
        for d in range(D):
            out[q0, d] = wrap32(np.int64(acc0[d]))
            if q0 + 1 < T:
                out[q0 + 1, d] = wrap32(np.int64(acc1[d]))
    return out


def attention_av_split(v, s, recip, mx, head_dim):
    """Same result as :func:`attention_av`: the exps first, then the exact float64 MACs."""
    ah, al = attention_weights_split(s, recip, mx)
    return av_from_split(v.astype(np.float64), ah, al, head_dim)


@njit(cache=True, nogil=True)
def gelu_array(x, table, index_shift, cutoff_raw, index_bits):
    """Table GELU (spec §4.4) over an int64 array of any shape; same as kernels.gelu."""
    flat = x.reshape(-1)
    out = np.empty(flat.size, dtype=np.int64)
    nent = table.size
    fmask = (1 << index_shift) - 1
    imask = (1 << index_bits) - 1
    for n in range(flat.size):
        v = flat[n]
        relu = v if v > 0 else 0
        xa = wrap32(-v) if v < 0 else v
        if xa >= cutoff_raw:
            out[n] = relu
            continue
        idx = (xa >> index_shift) & imask
        t = (xa & fmask) << (22 - index_shift)
        a = table[idx]
        b = table[min(idx + 1, nent - 1)]
        delta = (((a << 22) + t * (b - a)) >> 22) & 4194303
        out[n] = relu - delta
    return out.reshape(x.shape)


@njit(cache=True, nogil=True)
def online_softmax_rows(s):
    """(sum, max) of the online softmax over each row of s [N, K], in order k = 0..K-1."""
    n, k = s.shape
    total = np.empty(n, dtype=np.int64)
    mx = np.empty(n, dtype=np.int64)
    for r in range(n):
        t = 0
        b = _FM_MIN
        for j in range(k):
            t, b = softmax_step(t, b, s[r, j])
        total[r] = t
        mx[r] = b
    return total, mx
