"""MoE routing (spec §4.6): strict top-k insertion, trunc0 probabilities, sorted queues."""

import numpy as np
import pytest

from moevit.golden.exp import hls_exp
from moevit.golden.fixed import recip, to_float, wrap32
from moevit.golden.kernels import FM_MIN, online_softmax
from moevit.golden.moe import combine, moe_forward, route, top_k


def _top_k_scalar(row, k, scores=False):
    lst = [(FM_MIN, 0)] * k
    for e, s in enumerate(row):
        for j in range(k):
            if s > lst[j][0]:
                lst = lst[:j] + [(int(s), e)] + lst[j:k - 1]
                break
    return [s for s, _ in lst] if scores else [i for _, i in lst]


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_top_k_matches_insertion_scan_with_ties(k):
    rng = np.random.default_rng(k)
    g = rng.integers(-3, 4, (300, 8)) << 20  # few distinct values: many ties
    got = top_k(g, k)
    for t in range(len(g)):
        assert list(got[t]) == _top_k_scalar(g[t], k)


def test_top_k_ties_keep_lower_index_and_equal_never_displaces():
    g = np.array([[5, 7, 7, 7, 1],       # three-way tie for best: experts 1, 2 in order
                  [9, 3, 9, 9, 9],       # 9 at 0 first, later 9s never displace it
                  [FM_MIN, FM_MIN, 4, FM_MIN, FM_MIN]])  # -512 never beats the initial entry
    ix = top_k(g, 2)
    assert list(ix[0]) == [1, 2]
    assert list(ix[1]) == [0, 2]
    assert list(ix[2]) == [2, 0]  # second slot keeps the initial (-512, index 0)


def _logits(cfg, seed, scale=2.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, scale, (cfg.tokens, cfg.num_experts)) * 2**22).astype(np.int64)


def test_queues_sorted_and_each_token_in_k_queues(edge_cfg):
    cfg = edge_cfg
    rt = route(_logits(cfg, 0), cfg)
    counts = np.zeros(cfg.tokens, dtype=int)
    for e, q in enumerate(rt.queues):
        assert np.all(np.diff(q) > 0)  # ascending token order
        counts[q] += 1
        for t, p in zip(q, rt.queue_probs[e]):
            j = list(rt.experts[t]).index(e)
            assert p == rt.probs[t, j]
    assert np.all(counts == cfg.top_k)
    assert rt.metaqueue == sorted(e for e in range(cfg.num_experts) if len(rt.queues[e]))
    assert rt.tokens_per_expert.sum() == cfg.tokens * cfg.top_k


def test_probabilities_by_trunc0_division_not_reciprocal(edge_cfg):
    cfg = edge_cfg
    g = _logits(cfg, 1)
    rt = route(g, cfg)
    total, mx, _ = online_softmax(g)
    assert np.array_equal(total, rt.sum) and np.array_equal(mx, rt.max)
    chosen = np.take_along_axis(g, rt.experts, axis=1)
    num = hls_exp(wrap32(chosen - mx[:, None]))
    for t in range(cfg.tokens):
        for j in range(cfg.top_k):
            n, s = int(num[t, j]), int(total[t])
            q = abs(n << 22) // abs(s)
            assert rt.probs[t, j] == (q if (n < 0) == (s < 0) else -q)
    # the attention's way (reciprocal then floor-multiply) gives different bits somewhere
    via_recip = wrap32((num * recip(total)[:, None]) >> 22)
    assert np.count_nonzero(via_recip != rt.probs) > 0
    # probabilities approximate the float softmax over all E logits (no renormalisation)
    gf = to_float(g)
    pf = np.exp(gf - gf.max(1, keepdims=True))
    pf /= pf.sum(1, keepdims=True)
    ref = np.take_along_axis(pf, rt.experts, axis=1)
    assert np.max(np.abs(to_float(rt.probs) - ref)) < 1e-5
    assert np.all(to_float(rt.probs).sum(1) < 1.0 + 1e-6)


def test_combine_floors_and_accumulates(tiny_cfg):
    cfg = tiny_cfg
    rt = route(_logits(cfg, 2), cfg)
    x = np.random.default_rng(0).integers(-2**24, 2**24, (cfg.tokens, cfg.dim))
    fc1 = lambda e, xx, rows: xx[rows] * (e + 1)
    fc2 = lambda e, h: h - 3 * e
    out = moe_forward(x, rt, fc1, fc2)
    ref = np.zeros_like(x)
    for t in range(cfg.tokens):
        for j in range(cfg.top_k):
            e, p = rt.experts[t, j], rt.probs[t, j]
            y = x[t] * (e + 1) - 3 * e
            ref[t] += np.array([(int(v) * int(p)) >> 22 for v in y])
    assert np.array_equal(out, wrap32(ref))
    assert combine(np.array([[-1]]), np.array([1]))[0, 0] == -1  # floor, not trunc


def test_fast_route_equals_reference(edge_cfg):
    g = _logits(edge_cfg, 9, scale=40.0)  # wide logits: exp arguments below -16 and wraps
    g[0] = -2**31
    g[1, :3] = 2**31 - 1
    a, b = route(g, edge_cfg), route(g, edge_cfg, fast=True)
    for f in ("sum", "max", "experts", "probs"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f


def test_never_displaced_entry_keeps_minus_512_score(edge_cfg):
    """A token with one logit above -512 keeps the initial (-512, expert 0) entry; its
    probability uses the entry's score -512, not expert 0's logit."""
    cfg = edge_cfg
    g = np.full((cfg.tokens, cfg.num_experts), FM_MIN, dtype=np.int64)
    g[:, 0] = 1 << 22  # expert 0 = 1.0, all others -512
    g[1:, 1] = 0       # other tokens: ordinary second choice
    ix, sc = top_k(g, 2, with_scores=True)
    assert list(ix[0]) == [0, 0] and list(sc[0]) == [1 << 22, FM_MIN]
    assert list(sc[0]) == _top_k_scalar(g[0], 2, scores=True)
    for fast in (False, True):
        rt = route(g, cfg, fast=fast)
        # exp(wrap32(-512 - 1)) = exp(+511): saturates, then divided by the sum
        # (the 14 saturated exp(-512 - 1.0) terms also wrapped the sum negative: trunc0)
        sat, S = (2**31 - 1) << 22, int(rt.sum[0])
        assert S < 0 and rt.probs[0, 1] == wrap32(-(sat // -S))
        assert rt.probs[0, 1] != rt.probs[0, 0]
        assert list(rt.queues[0][:1]) == [0] and rt.tokens_per_expert[0] == cfg.tokens + 1


def test_full_queue_is_read_in_direct_mode(tiny_cfg):
    """A queue of exactly T entries is read as rows 0..T-1 (direct mode) but written through
    the queue: with token 0 twice in queue[0] and token T-1 absent, row i pairs with queue[i]."""
    cfg = tiny_cfg
    T = cfg.tokens
    g = np.full((T, cfg.num_experts), FM_MIN, dtype=np.int64)
    g[:, 0] = 1 << 22
    g[1:, 1] = 0            # token 0: (0, 0 placeholder); tokens 1..T-2: experts (0, 1)
    g[T - 1, 0] = FM_MIN
    g[T - 1, 2] = 5
    g[T - 1, 1] = 7         # last token: experts (1, 2), not 0
    rt = route(g, cfg)
    q0 = list(rt.queues[0])
    assert len(q0) == T and q0 == [0, 0] + list(range(1, T - 1))
    x = np.arange(T * cfg.dim, dtype=np.int64).reshape(T, cfg.dim) << 16
    seen = {}
    fc1 = lambda e, xx, rows: (seen.setdefault(e, list(rows)), xx[rows])[1]
    fc2 = lambda e, h: h
    out = moe_forward(x, rt, fc1, fc2)
    assert seen[0] == list(range(T))  # direct read
    ref = np.zeros_like(x)
    for e in rt.metaqueue:
        src = range(T) if len(rt.queues[e]) == T else rt.queues[e]
        for i, (t, p) in enumerate(zip(rt.queues[e], rt.queue_probs[e])):
            ref[t] += (x[list(src)[i]] * int(p)) >> 22
    assert np.array_equal(out, wrap32(ref))
