"""Mixture-of-experts block of the Edge-MoE datapath (spec §4.6) on raw fm_t integers.

1. gate logits g[t][e] = wrap32(Σ_d ⌊X·Wg / 2^14⌋) (no bias);
2. online softmax over experts e = 0..E-1 (sum S, max M), the §4.5.3 update;
3. top-k by insertion with strict '>' (ties keep the lower index; equal never displaces);
4. p = trunc0(hls_exp(wrap32(g - M))·2^22 / S): a true division, softmax over all E
   logits, no renormalisation over the k chosen;
5. queues: tokens appended in ascending order; metaqueue = non-empty experts ascending;
6. out[t] = Σ_k ⌊FC2_e(GELU(FC1_e(X_t)))·p_k⌋ (exact sum, order-free).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.golden import _fast
from moevit.golden.exp import hls_exp
from moevit.golden.fixed import FM_FRAC, div_fm, floor_shift, wrap32
from moevit.golden.kernels import FM_MIN, online_softmax


@dataclass
class Routing:
    """Routing of one image through one MoE layer."""

    logits: np.ndarray      # [T, E] raw
    sum: np.ndarray         # [T] online-softmax sum S (raw)
    max: np.ndarray         # [T] max logit M (raw)
    experts: np.ndarray     # [T, k] chosen experts, best first
    probs: np.ndarray       # [T, k] raw fm_t gate probabilities
    queues: list            # queues[e] = token ids (ascending)
    queue_probs: list       # queue_probs[e] = the matching probabilities
    metaqueue: list         # experts with non-empty queues, ascending

    @property
    def tokens_per_expert(self) -> np.ndarray:
        return np.array([len(q) for q in self.queues], dtype=np.int64)


def top_k(logits, k: int, *, with_scores: bool = False):
    """Top-k expert indices per row by the hardware's insertion scan (spec §4.6.4).

    The list starts as k entries (score -512, index 0); scanning e = 0..E-1, a score is
    inserted at the first position j with score > list[j] (strict), shifting the rest down;
    without an insertion the list is kept (the C code's uninitialised temporaries, read as
    "keep" at -O0).  ``with_scores`` also returns the list's scores: an entry never displaced
    keeps score -512 even though it names expert 0.
    """
    g = np.asarray(logits, dtype=np.int64)
    n, E = g.shape
    sc = np.full((n, k), FM_MIN, dtype=np.int64)
    ix = np.zeros((n, k), dtype=np.int64)
    rows = np.arange(n)
    for e in range(E):
        s = g[:, e]
        gt = s[:, None] > sc  # [n, k]
        # insertion position: first j with s > sc[j] (sc is sorted descending), k if none
        pos = np.where(gt.any(axis=1), gt.argmax(axis=1), k)
        for j in range(k - 1, -1, -1):
            shift = pos < j  # entries at j > pos move down from j-1
            ins = pos == j
            if j > 0:
                sc[:, j] = np.where(shift, sc[:, j - 1], sc[:, j])
                ix[:, j] = np.where(shift, ix[:, j - 1], ix[:, j])
            sc[rows[ins], j] = s[ins]
            ix[rows[ins], j] = e
    return (ix, sc) if with_scores else ix


def route(logits, cfg: AcceleratorConfig, fast: bool = False) -> Routing:
    """Softmax statistics, top-k, probabilities and queues from gate logits [T, E].

    ``fast`` runs the online softmax and exp in the numba kernels (same bits)."""
    g = np.asarray(logits, dtype=np.int64)
    T, E = g.shape
    if fast:
        total, bias = _fast.online_softmax_rows(np.ascontiguousarray(g))
    else:
        total, bias, _ = online_softmax(g)
    experts, chosen = top_k(g, cfg.top_k, with_scores=True)
    arg = wrap32(chosen - bias[:, None])
    num = _fast.exp_array(arg.reshape(-1)).reshape(arg.shape) if fast else hls_exp(arg)
    probs = div_fm(num, np.broadcast_to(total[:, None], num.shape))
    queues = [[] for _ in range(E)]
    qprobs = [[] for _ in range(E)]
    for t in range(T):
        for j in range(cfg.top_k):
            queues[experts[t, j]].append(t)
            qprobs[experts[t, j]].append(int(probs[t, j]))
    queues = [np.array(q, dtype=np.int64) for q in queues]
    qprobs = [np.array(p, dtype=np.int64) for p in qprobs]
    meta = [e for e in range(E) if len(queues[e])]
    return Routing(g, total, bias, experts, probs, queues, qprobs, meta)


def combine(y_raw, p_raw) -> np.ndarray:
    """⌊y·p⌋ per row: an expert's FC2 output scaled by each token's probability."""
    return wrap32(floor_shift(np.asarray(y_raw, np.int64) * np.asarray(p_raw, np.int64)[:, None],
                              FM_FRAC))


def moe_forward(x_raw, routing: Routing, expert_fc1, expert_fc2) -> np.ndarray:
    """Expert loop over the metaqueue.  ``expert_fc1(e, x, rows)`` returns GELU(FC1_e) on
    x[rows]; ``expert_fc2(e, h)`` returns FC2_e(h).  Output [T, D] raw.

    A queue holding T entries is read in direct mode (rows 0..T-1, spec §4.3) while the
    scored FC2 result i still goes to token queue[i].  For a sorted queue of distinct tokens
    this is the same; it differs only when a token sits twice in one queue (a never-displaced
    initial top-k entry), which the hardware then mis-pairs, and so does this model.
    """
    x = np.asarray(x_raw, dtype=np.int64)
    T = x.shape[0]
    out = np.zeros_like(x)
    for e in routing.metaqueue:
        rows = routing.queues[e]
        if len(rows) > T:
            warnings.warn(f"expert {e}: queue of {len(rows)} entries overflows the hardware's "
                          f"{T}-entry queue (undefined behaviour there); modelled as if it fit",
                          RuntimeWarning, stacklevel=2)
        in_rows = np.arange(T, dtype=np.int64) if len(rows) == T else rows
        h = expert_fc1(e, x, in_rows)
        y = expert_fc2(e, h)
        np.add.at(out, rows, combine(y, routing.queue_probs[e]))
    return wrap32(out)
