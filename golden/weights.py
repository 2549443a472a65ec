"""The weight set of one network, in the accelerator's kernel-argument layout (spec §7, §8.3).

:class:`Weights` holds float32 arrays (what training produces and the files store);
:meth:`Weights.quantize` floors them into the fixed-point formats of the config and reports
any value that wraps.  :func:`seeded_weights` builds a deterministic network with realistic
scales.  File formats (float32 folders, onboard .npy) live in :mod:`moevit.golden.weight_io`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

import numpy as np

from moevit.config import AcceleratorConfig, FixedFormat
from moevit.errors import ShapeError
from moevit.golden.fixed import quantize

#: field -> name of the format in ``cfg.formats`` (spec §3.1)
FIELD_FORMATS: dict[str, str] = {
    "patch_embed_weights": "wt_patch_embed",
    "patch_embed_bias": "wt_bias",
    "pos_embed": "fm",
    "norm_weights": "wt_norm",
    "norm_bias": "wt_bias",
    "attn_weights": "wt_linear",
    "attn_bias": "wt_attn_bias",
    "vit_weights_l1": "wt_linear",
    "vit_bias_l1": "wt_bias",
    "vit_weights_l2": "wt_linear",
    "vit_bias_l2": "wt_bias",
    "moe_weights_l1": "wt_linear",
    "moe_bias_l1": "wt_bias",
    "moe_weights_l2": "wt_linear",
    "moe_bias_l2": "wt_bias",
    "moe_w_gate_per_task": "wt_linear",
}


def expected_shapes(cfg: AcceleratorConfig) -> dict[str, tuple[int, ...]]:
    """Shape of every field for ``cfg`` (the onboard packing of spec §8.3)."""
    D, T, L = cfg.dim, cfg.tokens, cfg.depth
    H, E, Dh, p, C = cfg.mlp_hidden, cfg.num_experts, cfg.expert_hidden, cfg.patch_size, cfg.image_channels
    Ld, Lm = len(cfg.dense_layers), len(cfg.moe_layers)
    return {
        "patch_embed_weights": (D, C, p, p),
        "patch_embed_bias": (D,),
        "pos_embed": (T, D),
        "norm_weights": (L, 2, D),
        "norm_bias": (L, 2, D),
        "attn_weights": (L, 4, D, D),
        "attn_bias": (L, 4, D),
        "vit_weights_l1": (Ld, H, D),
        "vit_bias_l1": (Ld, H),
        "vit_weights_l2": (Ld, D, H),
        "vit_bias_l2": (Ld, D),
        "moe_weights_l1": (Lm, E, Dh, D),
        "moe_bias_l1": (Lm, E, Dh),
        "moe_weights_l2": (Lm, E, D, Dh),
        "moe_bias_l2": (Lm, E, D),
        "moe_w_gate_per_task": (cfg.num_tasks, Lm, E, D),
    }


@dataclass
class Weights:
    """All parameters of one network, kernel-argument layout.

    float32 arrays for a float weight set, int64 raw arrays for a quantised one
    (``raw=True``).  ``attn_weights[L]`` is [Q, K, V, proj], each [out][in];
    ``pos_embed[0]`` already holds cls + pos[0].
    """

    patch_embed_weights: np.ndarray
    patch_embed_bias: np.ndarray
    pos_embed: np.ndarray
    norm_weights: np.ndarray
    norm_bias: np.ndarray
    attn_weights: np.ndarray
    attn_bias: np.ndarray
    vit_weights_l1: np.ndarray
    vit_bias_l1: np.ndarray
    vit_weights_l2: np.ndarray
    vit_bias_l2: np.ndarray
    moe_weights_l1: np.ndarray
    moe_bias_l1: np.ndarray
    moe_weights_l2: np.ndarray
    moe_bias_l2: np.ndarray
    moe_w_gate_per_task: np.ndarray
    raw: bool = False

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "raw"]

    def items(self):
        for name in self.field_names():
            yield name, getattr(self, name)

    def validate(self, cfg: AcceleratorConfig) -> "Weights":
        """Check every shape against ``cfg``; raise :class:`ShapeError` naming each mismatch."""
        want = expected_shapes(cfg)
        bad = [f"{n}: expected {want[n]}, got {tuple(a.shape)}"
               for n, a in self.items() if tuple(a.shape) != want[n]]
        if bad:
            raise ShapeError(f"weights do not match config {cfg.name!r}:\n  " + "\n  ".join(bad))
        return self

    def format_of(self, name: str, cfg: AcceleratorConfig) -> FixedFormat:
        return getattr(cfg.formats, FIELD_FORMATS[name])

    def quantize(self, cfg: AcceleratorConfig, on_wrap: str = "wrap"):
        """Floor every tensor into its format.  Returns ``(raw_weights, {name: QuantReport})``.

        ``on_wrap="raise"`` raises :class:`moevit.errors.FormatRangeError` naming the tensor,
        the count and the worst value instead of wrapping.
        """
        if self.raw:
            raise ValueError("weights are already quantised (raw=True)")
        self.validate(cfg)
        out, reports = {}, {}
        for name, arr in self.items():
            out[name], reports[name] = quantize(arr, self.format_of(name, cfg), name=name,
                                                on_wrap=on_wrap)
        return Weights(**out, raw=True), reports

    def dequantize(self, cfg: AcceleratorConfig) -> "Weights":
        """raw -> float32 values (exact: every format has <= 24 significant bits... except fm)."""
        if not self.raw:
            return self
        out = {n: np.ldexp(a.astype(np.float64), -self.format_of(n, cfg).frac).astype(np.float32)
               for n, a in self.items()}
        return Weights(**out, raw=False)

    def gate(self, task: int) -> np.ndarray:
        """The ``moe_w_gate`` argument for one task: [Lm][E][D]."""
        if not 0 <= task < self.moe_w_gate_per_task.shape[0]:
            raise ValueError(f"task {task} out of range: this network has "
                             f"{self.moe_w_gate_per_task.shape[0]} tasks (0..{self.moe_w_gate_per_task.shape[0] - 1})")
        return self.moe_w_gate_per_task[task]

    def replace(self, **changes) -> "Weights":
        return dataclasses.replace(self, **changes)


def format_range_problems(items, cfg: AcceleratorConfig) -> list[str]:
    """``items``: (what, array, Weights field).  One line per array with values outside the
    field's fixed-point format (floor quantisation, spec §3.2 rule 1), naming ``what``."""
    lines = []
    for what, arr, field in items:
        _, rep = quantize(arr, getattr(cfg.formats, FIELD_FORMATS[field]), name=what, on_wrap="wrap")
        if not rep.ok:
            lines.append(rep.describe(what))
    return lines


def seeded_weights(cfg: AcceleratorConfig, seed: int = 0) -> Weights:
    """A deterministic network with realistic scales that fit every format.

    Linear weights ~ N(0, (1/sqrt(fan_in))^2) clipped to the format, biases small, LayerNorm
    gains near 1, pos_embed ~ N(0, 0.5^2): activations stay well inside +-512 through all
    layers while attention and routing remain non-trivial.
    """
    rng = np.random.default_rng(seed)
    shapes = expected_shapes(cfg)
    f = cfg.formats

    def normal(shape, std, fmt: FixedFormat):
        a = rng.normal(0.0, std, size=shape)
        return np.clip(a, fmt.min * 0.99, fmt.max * 0.99).astype(np.float32)

    D, H, Dh = cfg.dim, cfg.mlp_hidden, cfg.expert_hidden
    fan_patch = cfg.image_channels * cfg.patch_size ** 2
    # field -> std, in field order (the order of the RNG draws)
    stds = dict(
        patch_embed_weights=1.0 / np.sqrt(fan_patch), patch_embed_bias=0.1, pos_embed=0.5,
        norm_weights=0.1, norm_bias=0.1,
        attn_weights=1.0 / np.sqrt(D), attn_bias=0.1,
        vit_weights_l1=1.0 / np.sqrt(D), vit_bias_l1=0.05,
        vit_weights_l2=0.5 / np.sqrt(H), vit_bias_l2=0.05,
        moe_weights_l1=1.0 / np.sqrt(D), moe_bias_l1=0.05,
        moe_weights_l2=0.5 / np.sqrt(Dh), moe_bias_l2=0.05,
        moe_w_gate_per_task=1.0 / np.sqrt(D),
    )
    w = {name: normal(shapes[name], std, getattr(f, FIELD_FORMATS[name])) for name, std in stds.items()}
    w["norm_weights"] = (1.0 + w["norm_weights"]).astype(np.float32)   # LayerNorm gains near 1
    return Weights(**w).validate(cfg)
