"""Multi-head self-attention of the Edge-MoE datapath on raw fm_t integers (spec §4.5).

Readable numpy reference of the three attention stages:

* :func:`qk_scores` — Q·Kᵀ with each product floored to fm_t, an exact (wrapping) sum per
  8-wide feature block, the ×head_dim^-0.5 scale applied per block as a floor shift (§4.5.1);
* :func:`softmax_stats` — single-pass softmax statistics visiting the keys of row q in the
  staggered cyclic order k0, k0+1, …, T-1, 0, …, k0-1 with k0 = q mod P (§4.5.2, §4.5.3);
* :func:`attention_av` — A = ⌊exp(wrap32(s - max))·recip⌋, out = Σ_k ⌊V·A⌋ (§4.5.4).

:func:`score_buffer` and :func:`softmax_info_buffer` lay the results out as the hardware
writes them to DRAM (§7): ``attn[query_block][key][lane][head_lane]`` and
``attn_softmax_info[q][recip0, max0, recip1, max1, ..., pad]``.
"""

from __future__ import annotations

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.errors import ShapeError
from moevit.golden.exp import hls_exp
from moevit.golden.fixed import FM_FRAC, floor_shift, wrap32
from moevit.golden.kernels import online_softmax

ORDERS = ("cyclic", "natural")


def _check(a, shape, name, dtype=np.int64):
    a = np.asarray(a, dtype=dtype)
    if a.shape != tuple(shape):
        raise ShapeError(f"{name}: expected shape {tuple(shape)}, got {a.shape}")
    return a


# ---------------------------------------------------------------------------- key order
def key_order(q: int, cfg: AcceleratorConfig) -> np.ndarray:
    """Keys in the order query row ``q`` visits them: k0..T-1, 0..k0-1 with k0 = q mod P."""
    T = cfg.tokens
    k0 = q % cfg.attn_parallel
    return (np.arange(T) + k0) % T


def key_orders(cfg: AcceleratorConfig, order: str = "cyclic") -> np.ndarray:
    """[T, T] table: row q lists the keys in visiting order (``"cyclic"`` or ``"natural"``)."""
    if order not in ORDERS:
        raise ValueError(f"unknown key order {order!r}; valid: {', '.join(ORDERS)}")
    T = cfg.tokens
    if order == "natural":
        return np.tile(np.arange(T), (T, 1))
    return np.stack([key_order(q, cfg) for q in range(T)])


# ---------------------------------------------------------------------------- scores
def qk_scores(q_raw, k_raw, cfg: AcceleratorConfig) -> np.ndarray:
    """Raw attention scores s[q][k][h] (int64, fm_t raw), spec §4.5.1.

    s = wrap32( Σ_blk ( wrap32(Σ_{d∈blk} ⌊Q_d·K_d / 2^22⌋) >> shift ) ), where blk runs
    over the ``cfg.feature_block``-wide blocks of head h and shift = ``cfg.attn_scale_shift``.
    The block accumulator is an fm_t (it wraps) and is scaled by a floor before the blocks
    are summed, so the result is not ⌊q·k / 2^shift⌋.
    """
    T, D, H, fb = cfg.tokens, cfg.dim, cfg.heads, cfg.feature_block
    q = _check(q_raw, (T, D), "q_raw")
    k = _check(k_raw, (T, D), "k_raw")
    nblk = cfg.head_dim // fb
    qb = q.reshape(T, H, nblk, fb)
    kb = k.reshape(T, H, nblk, fb)
    out = np.zeros((T, T, H), dtype=np.int64)
    for h in range(H):
        acc = np.zeros((T, T), dtype=np.int64)
        for b in range(nblk):
            # |Q·K| <= 2^62 fits int64; floor each product to 22 fractional bits
            prod = floor_shift(qb[:, None, h, b, :] * kb[None, :, h, b, :], FM_FRAC)
            blk = wrap32(prod.sum(axis=-1))
            acc += floor_shift(blk, cfg.attn_scale_shift)
        out[:, :, h] = wrap32(acc)
    return out


# ---------------------------------------------------------------------------- softmax statistics
def softmax_stats(scores, cfg: AcceleratorConfig, order: str = "cyclic"):
    """Online softmax statistics per (query, head): returns ``(recip, max)``, each [T, heads].

    Keys are visited in the hardware's staggered cyclic order (``order="cyclic"``, the
    bit-exact one) or 0..T-1 (``"natural"``, for sensitivity studies; spec §13.7).
    ``recip`` = hls_recip(sum), ``max`` = the row maximum (the final bias).
    """
    T, H = cfg.tokens, cfg.heads
    s = _check(scores, (T, T, H), "scores")
    ko = key_orders(cfg, order)
    visited = s[np.arange(T)[:, None], ko, :]  # [q, j, h]: the j-th key row q visits
    _, bias, r = online_softmax(np.moveaxis(visited, 1, -1))
    return r, bias


# ---------------------------------------------------------------------------- softmax x V
def attention_weights(scores, recip, maxv, cfg: AcceleratorConfig) -> np.ndarray:
    """A[q][k][h] = wrap32(⌊hls_exp(wrap32(s - max))·recip / 2^22⌋) (spec §4.5.4)."""
    T, H = cfg.tokens, cfg.heads
    s = _check(scores, (T, T, H), "scores")
    r = _check(recip, (T, H), "recip")
    m = _check(maxv, (T, H), "maxv")
    e = hls_exp(wrap32(s - m[:, None, :]))
    return wrap32(floor_shift(e * r[:, None, :], FM_FRAC))


def attention_av(v_raw, scores, recip, maxv, cfg: AcceleratorConfig) -> np.ndarray:
    """Softmax·V: out[q][d] = wrap32(Σ_k ⌊V[k][d]·A[q][k][h(d)] / 2^22⌋), h(d) = d div head_dim.

    The sum over keys is exact modulo 2^32, so its order is free.  Returns [T, D] int64.
    """
    T, D, H = cfg.tokens, cfg.dim, cfg.heads
    v = _check(v_raw, (T, D), "v_raw")
    a = attention_weights(scores, recip, maxv, cfg)  # [Tq, Tk, H]
    hd = cfg.head_dim
    out = np.zeros((T, D), dtype=np.int64)
    for h in range(H):
        vh = v[:, h * hd:(h + 1) * hd]  # [Tk, hd]
        for q in range(T):
            out[q, h * hd:(h + 1) * hd] = floor_shift(vh * a[q, :, h, None], FM_FRAC).sum(axis=0)
    return wrap32(out)


# ---------------------------------------------------------------------------- DRAM layouts
def score_buffer_rows(cfg: AcceleratorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Query row held by each (block, key, lane) slot of the score buffer, and its validity.

    Lane o of block b holds row P·b+o for keys k >= o and row P·(b-1)+o for k < o (its q
    vector is reloaded only at k == o).  Returns ``(rows [B, T, P] int, valid [B, T, P] bool)``.
    ``cfg`` needs ``query_blocks``, ``tokens`` and ``attn_parallel`` (an accelerator config, or
    the float model's ``FloatConfig`` built from one).
    """
    B, T, P = cfg.query_blocks, cfg.tokens, cfg.attn_parallel
    b = np.arange(B)[:, None, None]
    k = np.arange(T)[None, :, None]
    o = np.arange(P)[None, None, :]
    rows = np.where(k >= o, P * b + o, P * (b - 1) + o)
    valid = ((k >= o) | (b > 0)) & (rows < T) & (rows >= 0)
    return np.broadcast_to(rows, (B, T, P)).copy(), np.broadcast_to(valid, (B, T, P)).copy()


def score_buffer_valid(cfg: AcceleratorConfig) -> np.ndarray:
    """Bool mask [query_blocks][T][P][head_lanes]: True where the score buffer holds a real score."""
    _, valid = score_buffer_rows(cfg)
    lanes = np.arange(cfg.head_lanes) < cfg.heads
    return valid[..., None] & lanes[None, None, None, :]


def score_buffer(scores, cfg: AcceleratorConfig) -> np.ndarray:
    """The ``attn`` DRAM buffer [query_blocks][T][P][head_lanes] (spec §4.5.2, §7).

    Entry [b][k][o][h] = s[row(b,k,o)][k][h]; junk slots (invalid rows, unused head lanes)
    are 0 here (the hardware leaves garbage there).  Raw integer scores give int64; float
    scores (the float model's, for comparisons) keep their dtype.
    """
    T, H = cfg.tokens, cfg.heads
    s = np.asarray(scores)
    s = _check(s, (T, T, H), "scores", s.dtype if np.issubdtype(s.dtype, np.floating) else np.int64)
    rows, valid = score_buffer_rows(cfg)
    B, _, P = rows.shape
    buf = np.zeros((B, T, P, cfg.head_lanes), dtype=s.dtype)
    k = np.broadcast_to(np.arange(T)[None, :, None], rows.shape)
    r = np.where(valid, rows, 0)
    buf[..., :H] = np.where(valid[..., None], s[r, k, :], 0)
    return buf


def softmax_info_buffer(recip, maxv, cfg: AcceleratorConfig) -> np.ndarray:
    """The ``attn_softmax_info`` buffer [T][softmax_info_width]: recip_h, max_h pairs, pads 0."""
    T, H = cfg.tokens, cfg.heads
    r = _check(recip, (T, H), "recip")
    m = _check(maxv, (T, H), "maxv")
    buf = np.zeros((T, cfg.softmax_info_width), dtype=np.int64)
    buf[:, 0:2 * H:2] = r
    buf[:, 1:2 * H:2] = m
    return buf


def attention(q_raw, k_raw, v_raw, cfg: AcceleratorConfig, order: str = "cyclic") -> dict:
    """All attention stages for one image: dict with scores, recip, max, av."""
    s = qk_scores(q_raw, k_raw, cfg)
    r, m = softmax_stats(s, cfg, order)
    return dict(scores=s, recip=r, max=m, av=attention_av(v_raw, s, r, m, cfg))


def attention_buffers(q_raw, k_raw, v_raw, cfg: AcceleratorConfig, order: str = "cyclic"):
    """What the attention unit writes: (score buffer, softmax-info buffer, AV output),
    the first two in the DRAM layouts of spec §7."""
    a = attention(q_raw, k_raw, v_raw, cfg, order)
    return (score_buffer(a["scores"], cfg), softmax_info_buffer(a["recip"], a["max"], cfg),
            a["av"])
