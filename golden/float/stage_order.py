"""float64 evaluation of the accelerator's stage order (datapath spec §4, §6.2) with no rounding.

The golden integer model with every floor, wrap and table removed: it reads the kernel-layout
:class:`~moevit.golden.weights.Weights` (cls already folded into ``pos_embed[0]``, Q/K/V/proj
split, transposed gates), computes LayerNorm as E[x²]−E[x]², the attention scale per 8-wide
feature block, the single-pass softmax in each query's cyclic key order, the gate's online
softmax over experts with strict-greater top-k insertion and probability = exp(g−M)/S, and the
expert loop in meta-queue order with exact erf GELU.  It is the bridge between the float
PyTorch model (which must agree with it to ~1e-12 in float64) and the integer golden model
(which differs from it only by fixed-point rounding).
"""

from __future__ import annotations

import numpy as np
import torch

from moevit.config import AcceleratorConfig
from moevit.golden.weights import Weights


def gelu_exact(x: np.ndarray) -> np.ndarray:
    """x·Φ(x) with the erf form, float64."""
    t = torch.from_numpy(np.asarray(x, dtype=np.float64))
    return (0.5 * t * (1.0 + torch.special.erf(t / np.sqrt(2.0)))).numpy()


def _layernorm(x, g, b, eps):
    d = x.shape[-1]
    mean = (x * (1.0 / d)).sum(-1, keepdims=True)
    meansq = (x * (x * (1.0 / d))).sum(-1, keepdims=True)
    var = meansq - mean * mean + eps
    r = 1.0 / np.sqrt(var)
    return (x - mean) * r * g + b


def _linear(x, w, b):
    return x @ w.T.astype(np.float64) + b.astype(np.float64)


def _online_softmax(scores_in_order):
    """scores_in_order: [..., K] visited left to right -> (sum, max) as the hardware's update."""
    total = np.zeros(scores_in_order.shape[:-1])
    bias = np.full(scores_in_order.shape[:-1], -np.inf)
    for j in range(scores_in_order.shape[-1]):
        s = scores_in_order[..., j]
        new = s > bias
        total = np.where(new, total * np.exp(bias - s) + 1.0, total + np.exp(s - bias))
        bias = np.where(new, s, bias)
    return total, bias


def _attention(q, k, v, cfg: AcceleratorConfig, taps, pre):
    T, D = q.shape
    H, hd, fb = cfg.heads, cfg.head_dim, cfg.feature_block
    scale = 2.0 ** -cfg.attn_scale_shift
    # per 8-wide block partial dot products, each scaled, then summed (no floors here)
    qb = q.reshape(T, H, hd // fb, fb)
    kb = k.reshape(T, H, hd // fb, fb)
    scores = (np.einsum("qhbf,khbf->qkhb", qb, kb) * scale).sum(-1)  # [Tq, Tk, H]
    # each query row visits keys cyclically from k0 = q mod P
    k0 = np.arange(T) % cfg.attn_parallel
    order = (k0[:, None] + np.arange(T)[None, :]) % T                # [Tq, T]
    visited = np.take_along_axis(scores, order[:, :, None], axis=1)   # [Tq, T, H]
    total, mx = _online_softmax(np.moveaxis(visited, 1, -1))          # [Tq, H]
    recip = 1.0 / total
    a = np.exp(scores - mx[:, None, :]) * recip[:, None, :]           # [Tq, Tk, H]
    vh = v.reshape(T, H, hd)
    av = np.einsum("qkh,khd->qhd", a, vh).reshape(T, D)
    if taps is not None:
        taps[pre + "scores"] = scores
        info = np.zeros((T, cfg.softmax_info_width))
        info[:, 0:2 * H:2], info[:, 1:2 * H:2] = recip, mx
        taps[pre + "softmax_info"] = info
    return av


def _moe(x, w: Weights, m: int, task: int, cfg: AcceleratorConfig, taps, pre):
    T = x.shape[0]
    E, K = cfg.num_experts, cfg.top_k
    wg = w.moe_w_gate_per_task[task, m].astype(np.float64)           # [E, D] = w_gate^T
    g = x @ wg.T                                                     # [T, E]
    S, M = _online_softmax(g)
    # top-k by strict-greater insertion scanning e = 0..E-1 (ties keep the lower index)
    top_s = np.full((T, K), -np.inf)
    top_i = np.zeros((T, K), dtype=np.int64)
    for e in range(E):
        s = g[:, e]
        pos = np.full(T, K)
        for j in range(K - 1, -1, -1):
            pos = np.where(s > top_s[:, j], j, pos)
        old_s, old_i = top_s.copy(), top_i.copy()
        for j in range(K):  # keep above the insertion point, insert, shift the rest down
            below_s = old_s[:, j - 1] if j else old_s[:, j]
            below_i = old_i[:, j - 1] if j else old_i[:, j]
            top_s[:, j] = np.where(j < pos, old_s[:, j], np.where(j == pos, s, below_s))
            top_i[:, j] = np.where(j < pos, old_i[:, j], np.where(j == pos, e, below_i))
    probs = np.exp(top_s - M[:, None]) / S[:, None]
    out = np.zeros_like(x)
    queues = [np.nonzero((top_i == e).any(1))[0] for e in range(E)]  # ascending token order
    for e in range(E):                                              # meta-queue order
        tok = queues[e]
        if tok.size == 0:
            continue
        slot = np.argmax(top_i[tok] == e, axis=1)
        h = gelu_exact(_linear(x[tok], w.moe_weights_l1[m, e], w.moe_bias_l1[m, e]))
        y = _linear(h, w.moe_weights_l2[m, e], w.moe_bias_l2[m, e])
        out[tok] += y * probs[tok, slot][:, None]
    if taps is not None:
        taps[pre + "gate_logits"] = g
    routing = dict(experts=top_i, probs=probs,
                   tokens_per_expert=np.bincount(top_i.reshape(-1), minlength=E))
    return out, routing


def run_stage_order(weights: Weights, cfg: AcceleratorConfig, image: np.ndarray, task: int = 0,
                    taps: bool = True):
    """One image [C,H,W] (float, already on the pixel grid) -> (output [T,D], taps, routing).

    ``taps`` maps golden tap names to float64 arrays *without* the batch axis;
    ``routing[layer]`` = dict(experts [T,k], probs [T,k], tokens_per_expert [E])."""
    w = weights.validate(cfg).dequantize(cfg)  # dequantize: raw -> float, float weights as-is
    img = np.asarray(image, dtype=np.float64)
    p, D = cfg.patch_size, cfg.dim
    C, gh, gw = cfg.image_channels, cfg.grid_h, cfg.grid_w
    patches = img.reshape(C, gh, p, gw, p).transpose(1, 3, 0, 2, 4).reshape(gh * gw, C * p * p)
    pe = patches @ w.patch_embed_weights.reshape(D, -1).T.astype(np.float64) \
        + w.patch_embed_bias.astype(np.float64)
    pos = w.pos_embed.astype(np.float64)
    x = np.concatenate([pos[:1], pe + pos[1:]], axis=0)
    tp = {} if taps else None
    if tp is not None:
        tp["patch_embed"] = x.copy()
    routing = {}
    eps = cfg.layernorm_eps
    for layer in range(cfg.depth):
        pre = f"l{layer}."
        nw, nb = w.norm_weights[layer].astype(np.float64), w.norm_bias[layer].astype(np.float64)
        aw, ab = w.attn_weights[layer], w.attn_bias[layer]
        h = _layernorm(x, nw[0], nb[0], eps)
        q, k = _linear(h, aw[0], ab[0]), _linear(h, aw[1], ab[1])
        v = _linear(h, aw[2], ab[2])
        av = _attention(q, k, v, cfg, tp, pre)
        proj = _linear(av, aw[3], ab[3])
        x1 = x + proj
        h2 = _layernorm(x1, nw[1], nb[1], eps)
        if cfg.is_moe(layer):
            mlp, routing[layer] = _moe(h2, w, cfg.moe_index(layer), task, cfg, tp, pre)
        else:
            d = cfg.dense_index(layer)
            hid = gelu_exact(_linear(h2, w.vit_weights_l1[d], w.vit_bias_l1[d]))
            mlp = _linear(hid, w.vit_weights_l2[d], w.vit_bias_l2[d])
            if tp is not None:
                tp[pre + "hidden"] = hid
        out = x1 + mlp
        if tp is not None:
            tp.update({pre + "ln1": h, pre + "q": q, pre + "k": k, pre + "v": v, pre + "av": av,
                       pre + "proj": proj, pre + "resid1": x1, pre + "ln2": h2,
                       pre + "mlp_out": mlp, pre + "out": out})
        x = out
    return x, (tp or {}), routing
