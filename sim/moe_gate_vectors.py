"""Test layers of the MoE gate testbench (host side, numpy only): corner layers, seeded
random layers, and a layer taken from the golden model's taps.

Each layer is ``(name, x [T, dim] raw fm_t, wg [E, dim] raw int16, taps or None)``.
"""

from __future__ import annotations

import numpy as np

from moevit.config import AcceleratorConfig


def _fmt_bounds(cfg):
    f = cfg.formats
    return (f.fm.raw_min, f.fm.raw_max), (f.wt_linear.raw_min, f.wt_linear.raw_max)


def random_layer(cfg: AcceleratorConfig, rng, *, x_std: float = 1.5, ties: bool = True):
    """x ~ N(0, x_std²), gate rows ~ N(0, 1/dim) floored to the formats.  With ``ties``:
    expert E-1 copies expert 1's row (equal logits: the lower index must win) and token 1
    is all zero (every logit 0)."""
    (xlo, xhi), (wlo, whi) = _fmt_bounds(cfg)
    T, D, E = cfg.tokens, cfg.dim, cfg.num_experts
    fx, fw = cfg.formats.fm.frac, cfg.formats.wt_linear.frac
    x = np.clip(np.floor(rng.normal(0, x_std, (T, D)) * 2 ** fx), xlo, xhi).astype(np.int64)
    wg = np.clip(np.floor(rng.normal(0, D ** -0.5, (E, D)) * 2 ** fw), wlo, whi).astype(np.int64)
    if ties and E > 2:
        wg[E - 1] = wg[1]
        x[min(1, T - 1)] = 0
    return x, wg


def corner_layers(cfg: AcceleratorConfig, rng) -> list:
    """Ties, all-equal logits (experts 0 and 1 get every token, the rest none), format
    extremes with wrapping logits, the never-displaced initial top-k entry (a token whose
    logits are all -512 sits twice in queue 0), and one expert taking every token."""
    (xlo, xhi), (wlo, whi) = _fmt_bounds(cfg)
    T, D, E = cfg.tokens, cfg.dim, cfg.num_experts
    fw = cfg.formats.wt_linear.frac
    layers = []
    x, wg = random_layer(cfg, rng)
    layers.append(("ties_duplicate_row_zero_token", x, wg, None))
    layers.append(("all_logits_equal", x, np.zeros_like(wg), None))
    xe = rng.choice(np.array([xlo, xhi, 0, 1, -1], dtype=np.int64), size=(T, D))
    we = rng.choice(np.array([wlo, whi, 0, 1, -1], dtype=np.int64), size=(E, D))
    layers.append(("format_extremes", xe, we, None))
    xd, wd = random_layer(cfg, rng, ties=False)
    wd[:, 0] = 1 << fw                    # weight 1.0 on feature 0 for every expert
    xd[0] = 0
    xd[0, 0] = xlo                        # token 0: every logit = floor(-512 * 1.0) = -512
    layers.append(("initial_entry_kept", xd, wd, None))
    xa, wa = random_layer(cfg, rng, ties=False)
    xa = np.abs(xa)
    wa[E - 1] = whi // 2                  # expert E-1 dominates every (non-negative) token
    layers.append(("one_expert_all_tokens", xa, wa, None))
    return layers


def model_layer(cfg: AcceleratorConfig, seed: int = 0):
    """The first MoE layer of the golden model (seeded weights, synthetic image, task 0):
    x = the LN2 tap, wg = that layer's gate weights, taps = (experts, probs) per token."""
    from moevit.golden.model import GoldenModel
    from moevit.golden.weight_io import synthetic_image
    from moevit.golden.weights import seeded_weights

    L = cfg.moe_layers[0]
    gm = GoldenModel(cfg, seeded_weights(cfg, seed))
    res = gm.run(synthetic_image(cfg, seed), task=0, taps={f"l{L}.ln2"})
    x = np.asarray(res.taps[f"l{L}.ln2"][0], dtype=np.int64)
    wg = np.asarray(gm.w.gate(0)[cfg.moe_index(L)], dtype=np.int64)
    r = res.routing[L]
    return ("golden_model_l%d" % L, x, wg,
            (np.asarray(r["experts"][0]), np.asarray(r["probs"][0])))


def default_layers(cfg: AcceleratorConfig, seed: int, random_tokens: int,
                   with_model: bool = True) -> list:
    """Model layer (optional), corner layers, then ceil(random_tokens / T) random layers."""
    rng = np.random.default_rng(seed)
    layers = [model_layer(cfg, seed)] if with_model else []
    layers += corner_layers(cfg, rng)
    for i in range(-(-max(0, random_tokens) // cfg.tokens)):
        x, wg = random_layer(cfg, rng, x_std=float(rng.choice([0.5, 1.5, 8.0])))
        layers.append((f"random{i}", x, wg, None))
    return layers


def save_layers(layers, path) -> None:
    arrays = {}
    for i, (_, x, wg, taps) in enumerate(layers):
        arrays[f"x{i}"], arrays[f"wg{i}"] = x, wg
        if taps is not None:
            arrays[f"experts{i}"], arrays[f"probs{i}"] = taps
    np.savez(path, names=np.array([n for n, *_ in layers]), **arrays)
