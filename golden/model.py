"""The bit-exact integer golden model of the whole Edge-MoE accelerator (spec §4, §6, §7).

``GoldenModel(cfg, weights).run(images, task)`` runs the ``ViT_compute`` schedule of §6.2
for every image: patch embedding, then per layer LN1 → Q, K → scores + softmax info →
V → softmax·V → proj → residual → LN2 → dense MLP (FC1+GELU, FC2) or MoE → residual.
Every stage the hardware can stop at is available as a named tap (the ``debug_id`` stops
of §6.2), the score buffer and softmax info in their DRAM layouts (§7).

By default the hot loops run in numba kernels (:mod:`moevit.golden._fast`), each tested
equal to the numpy reference; ``fast=False`` runs the numpy references throughout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError, ShapeError
from moevit.golden import _fast, attention as att
from moevit.golden.fixed import quantize, wrap32
from moevit.golden.kernels import GeluSpec, gelu
from moevit.golden.layernorm import layernorm
from moevit.golden.linear import linear, linear_ref, scaled_weights_T
from moevit.golden.moe import moe_forward, route
from moevit.golden.patch_embed import patch_embed, product_shift
from moevit.golden.weights import Weights

LAYER_TAPS = ("ln1", "q", "k", "scores", "score_buffer", "softmax_info", "v", "av", "proj",
              "resid1", "ln2", "hidden", "gate_logits", "mlp_out", "out")


def tap_names(cfg: AcceleratorConfig) -> list[str]:
    """Every tap this config produces, in pipeline order."""
    names = ["patch_embed"]
    for layer in range(cfg.depth):
        for t in LAYER_TAPS:
            if t == "hidden" and cfg.is_moe(layer):
                continue
            if t == "gate_logits" and not cfg.is_moe(layer):
                continue
            names.append(f"l{layer}.{t}")
    return names


@dataclass
class GoldenResult:
    """Output of :meth:`GoldenModel.run`.

    ``output`` raw int64 [N, T, D]; ``taps`` name -> raw int64 [N, ...]; ``routing`` MoE
    layer -> dict(experts [N,T,k], probs [N,T,k] raw, tokens_per_expert [N,E]);
    ``timings`` stage -> seconds (summed over images).
    """

    output: np.ndarray
    taps: dict = field(default_factory=dict)
    routing: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


class GoldenModel:
    """Bit-exact integer model for one config and one weight set.

    ``weights``: a float :class:`Weights` (floored into the formats; wraps are recorded in
    ``quant_reports``) or an already-quantised one (``raw=True``).
    """

    def __init__(self, cfg: AcceleratorConfig, weights: Weights, *, fast: bool = True):
        self.cfg = cfg
        weights.validate(cfg)
        if weights.raw:
            self.w, self.quant_reports = weights, {}
        else:
            self.w, self.quant_reports = weights.quantize(cfg)
        self.fast = fast
        self.gelu_spec = GeluSpec.from_config(cfg)
        self._wT: dict = {}
        f = cfg.formats
        self.w_frac = f.wt_linear.frac
        self.attn_bias_frac = f.wt_attn_bias.frac
        self.bias_frac = f.wt_bias.frac
        self._orders = att.key_orders(cfg, "cyclic").astype(np.int64)

    # ------------------------------------------------------------------ building blocks
    def _gelu(self, y):
        if not self.fast:
            return gelu(y, self.gelu_spec)
        g = self.gelu_spec
        return _fast.gelu_array(np.ascontiguousarray(y, dtype=np.int64), g.table, g.index_shift,
                                g.cutoff_raw, g.index_bits)

    def _operand(self, key, w, w_frac):
        """The cached :func:`scaled_weights_T` of ``w`` under ``key`` (built on first use)."""
        wT = self._wT.get(key)
        if wT is None:
            wT = self._wT[key] = scaled_weights_T(w, w_frac)
        return wT

    def _patch_operand(self):
        w = self.w.patch_embed_weights
        return self._operand(("patch",), w.reshape(self.cfg.dim, -1), product_shift(self.cfg))

    def _lin(self, key, x, w, b, bias_frac, *, use_gelu=False, rows=None):
        g = self._gelu if use_gelu else None
        if not self.fast:
            xs = x if rows is None else np.asarray(x)[rows]
            return linear_ref(xs, w, b, w_frac=self.w_frac, bias_frac=bias_frac, gelu=g)
        wT = self._operand(key, w, self.w_frac)
        return linear(x, w, b, w_frac=self.w_frac, bias_frac=bias_frac, gelu=g, rows=rows, wT=wT)

    def _attention(self, q, k, v):
        cfg = self.cfg
        if not self.fast:
            a = att.attention(q, k, v, cfg)
            return a["scores"], a["recip"], a["max"], a["av"]
        s = _fast.qk_scores_split(q, np.ascontiguousarray(k.T), cfg.heads, cfg.head_dim,
                                  cfg.feature_block, cfg.attn_scale_shift)
        r, m = _fast.softmax_stats(s, self._orders)
        return s, r, m, _fast.attention_av_split(v, s, r, m, cfg.head_dim)

    def pixels(self, images) -> np.ndarray:
        """Images -> raw pixels [N, C, H, W] (uint8 raw as is; floats floored to pixel_t)."""
        cfg = self.cfg
        a = np.asarray(images)
        shape = (cfg.image_channels, cfg.image_height, cfg.image_width)
        if a.ndim == 3:
            a = a[None]
        if a.ndim != 4 or a.shape[1:] != shape:
            raise ShapeError(f"images: expected [N, {shape[0]}, {shape[1]}, {shape[2]}] or "
                             f"[{shape[0]}, {shape[1]}, {shape[2]}], got {np.asarray(images).shape}")
        if a.dtype == np.uint8:
            return a.astype(np.int64)
        raw, _ = quantize(a, cfg.formats.pixel, name="image")  # floor; 1.0 wraps to 0
        return raw

    def _prepare(self, task: int):
        """Build every cached float64 weight operand (otherwise built on first use)."""
        if not self.fast:
            return
        cfg, w = self.cfg, self.w

        def put(key, m):
            self._operand(key, m, self.w_frac)

        self._patch_operand()
        for L in range(cfg.depth):
            for j in range(4):
                put(("attn", L, j), w.attn_weights[L, j])
            if cfg.is_moe(L):
                mi = cfg.moe_index(L)
                put(("gate", task, L), w.gate(task)[mi])
                for e in range(cfg.num_experts):
                    put(("fc1", L, e), w.moe_weights_l1[mi, e])
                    put(("fc2", L, e), w.moe_weights_l2[mi, e])
            else:
                di = cfg.dense_index(L)
                put(("vit1", L), w.vit_weights_l1[di])
                put(("vit2", L), w.vit_weights_l2[di])

    # ------------------------------------------------------------------ one image
    def run_image(self, pixels_raw, task: int = 0, taps=None, timings=None, progress=None):
        """Run one image (raw pixels [C,H,W]).  Returns (output, taps dict, routing dict).

        ``progress``, if given, is called with no argument after each layer.
        """
        cfg, w = self.cfg, self.w
        task = self.task_id(task)
        gate = w.gate(task)
        want = (lambda n: True) if taps is True else ((lambda n: n in taps) if taps else
                                                      (lambda n: False))
        out_taps: dict = {}
        routing: dict = {}
        tm = timings if timings is not None else {}

        def tap(name, fn):
            if want(name):
                out_taps[name] = np.asarray(fn(), dtype=np.int64)

        def tick(name, t0):
            tm[name] = tm.get(name, 0.0) + time.perf_counter() - t0
            return time.perf_counter()

        t0 = time.perf_counter()
        x = patch_embed(pixels_raw, w.patch_embed_weights, w.patch_embed_bias, w.pos_embed, cfg,
                        wT=self._patch_operand() if self.fast else None, reference=not self.fast)
        tap("patch_embed", lambda: x)
        t0 = tick("patch_embed", t0)

        for L in range(cfg.depth):
            p = f"l{L}."
            ln1 = layernorm(x, w.norm_weights[L, 0], w.norm_bias[L, 0], cfg)
            tap(p + "ln1", lambda: ln1)
            t0 = tick("layernorm", t0)
            aw, ab = w.attn_weights[L], w.attn_bias[L]
            q = self._lin(("attn", L, 0), ln1, aw[0], ab[0], self.attn_bias_frac)
            k = self._lin(("attn", L, 1), ln1, aw[1], ab[1], self.attn_bias_frac)
            v = self._lin(("attn", L, 2), ln1, aw[2], ab[2], self.attn_bias_frac)
            t0 = tick("linear", t0)
            s, r, m, av = self._attention(q, k, v)
            t0 = tick("attention", t0)
            tap(p + "q", lambda: q)
            tap(p + "k", lambda: k)
            tap(p + "scores", lambda: s)
            tap(p + "score_buffer", lambda: att.score_buffer(s, cfg))
            tap(p + "softmax_info", lambda: att.softmax_info_buffer(r, m, cfg))
            tap(p + "v", lambda: v)
            tap(p + "av", lambda: av)
            t0 = time.perf_counter()
            proj = self._lin(("attn", L, 3), av, aw[3], ab[3], self.attn_bias_frac)
            t0 = tick("linear", t0)
            x = wrap32(x + proj)
            ln2 = layernorm(x, w.norm_weights[L, 1], w.norm_bias[L, 1], cfg)
            tap(p + "proj", lambda: proj)
            tap(p + "resid1", lambda: x)
            tap(p + "ln2", lambda: ln2)
            t0 = tick("layernorm", t0)
            if cfg.is_moe(L):
                mi = cfg.moe_index(L)
                logits = self._lin(("gate", task, L), ln2, gate[mi], None, self.bias_frac)
                rt = route(logits, cfg, fast=self.fast)
                t0 = tick("moe_gate", t0)
                w1, b1 = w.moe_weights_l1[mi], w.moe_bias_l1[mi]
                w2, b2 = w.moe_weights_l2[mi], w.moe_bias_l2[mi]
                mlp = moe_forward(
                    ln2, rt,
                    lambda e, xx, rows: self._lin(("fc1", L, e), xx, w1[e], b1[e], self.bias_frac,
                                                  use_gelu=True, rows=rows),
                    lambda e, h: self._lin(("fc2", L, e), h, w2[e], b2[e], self.bias_frac))
                t0 = tick("moe_experts", t0)
                tap(p + "gate_logits", lambda: logits)
                routing[L] = dict(experts=rt.experts, probs=rt.probs,
                                  tokens_per_expert=rt.tokens_per_expert)
            else:
                di = cfg.dense_index(L)
                hidden = self._lin(("vit1", L), ln2, w.vit_weights_l1[di], w.vit_bias_l1[di],
                                   self.bias_frac, use_gelu=True)
                mlp = self._lin(("vit2", L), hidden, w.vit_weights_l2[di], w.vit_bias_l2[di],
                                self.bias_frac)
                t0 = tick("mlp", t0)
                tap(p + "hidden", lambda: hidden)
            x = wrap32(x + mlp)
            tap(p + "mlp_out", lambda: mlp)
            tap(p + "out", lambda: x)
            t0 = tick("residual", t0)
            if progress is not None:
                progress()
        return x, out_taps, routing

    # ------------------------------------------------------------------ batch
    def task_id(self, task) -> int:
        """Task id from an id or a name (``"semseg"``, ``"depth"``, as the float model and the
        CLI accept); :class:`moevit.errors.ConfigError` names the valid ones otherwise."""
        from moevit.golden.tasks import default_tasks, task_index
        return task_index(default_tasks(self.cfg.num_tasks), task)

    def run(self, images, task: int | str = 0, taps=False, progress=None,
            workers: int = 1) -> GoldenResult:
        """Run a batch.  ``images``: float [N,C,H,W] / [C,H,W] in [0,1) or raw uint8.
        ``task``: id or name (:meth:`task_id`).

        ``taps``: False, True (all of :func:`tap_names`) or a set of names.  ``progress`` is
        called after every layer of every image.  ``workers`` > 1 runs images on that many
        threads (the numba kernels release the GIL); results do not depend on it.
        """
        if taps and taps is not True:
            unknown = set(taps) - set(tap_names(self.cfg))
            if unknown:
                raise ConfigError(f"unknown tap names {sorted(unknown)}; see "
                                  f"moevit.golden.model.tap_names(cfg)")
        px = self.pixels(images)
        task = self.task_id(task)
        n_img = px.shape[0]
        tms = [{} for _ in range(n_img)]

        def one(n):
            return self.run_image(px[n], task, taps, tms[n], progress)

        if workers > 1 and n_img > 1:
            self._prepare(task)  # fill the weight-operand cache before threads share it
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(one, range(n_img)))
        else:
            results = [one(n) for n in range(n_img)]
        outs = [r[0] for r in results]
        taps_all = [r[1] for r in results]
        rout_all = [r[2] for r in results]
        timings = {}
        for tm in tms:
            for k, v in tm.items():
                timings[k] = timings.get(k, 0.0) + v
        taps_out = {name: np.stack([t[name] for t in taps_all]) for name in taps_all[0]}
        routing = {L: {key: np.stack([r[L][key] for r in rout_all]) for key in rout_all[0][L]}
                   for L in rout_all[0]}
        return GoldenResult(np.stack(outs), taps_out, routing, timings)
