"""Move weights between the float model, the kernel-layout :class:`Weights`, Edge-MoE weight
folders and M³ViT checkpoints (spec m3vit-model.md §3, §4.2, §4.4, §4.6).

- :func:`to_weights` / :func:`load_weights`: float model <-> :class:`Weights` (cls folded into
  ``pos_embed[0]``, qkv split into Q/K/V, gates transposed to [task][layer][E][D]).
- :func:`export_folder` / :func:`import_folder`: float model <-> Edge-MoE ``*.float32.bin``
  folder (through :mod:`moevit.golden.weight_io`), with range checks against the preset's formats.
- :func:`read_m3vit_checkpoint` / :func:`load_m3vit_checkpoint`: an original sharded M³ViT
  checkpoint (``module.`` prefix, one ``{rank}.pth`` per GPU with that rank's expert slices);
  :func:`save_m3vit_checkpoint` writes one in the same layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError, FormatRangeError, WeightFileError
from moevit.golden.float.model import FloatConfig, FloatM3ViT
from moevit.golden.weights import Weights, format_range_problems

_SHAPE_FIELDS = ("image_channels", "image_height", "image_width", "patch_size", "dim", "depth",
                 "heads", "mlp_hidden", "num_experts", "top_k", "expert_hidden", "moe_layers")


def check_compatible(fcfg: FloatConfig, cfg: AcceleratorConfig) -> None:
    """Raise ConfigError naming every size where the float model and ``cfg`` differ."""
    bad = [f"{f}: float model {getattr(fcfg, f)} vs {cfg.name} {getattr(cfg, f)}"
           for f in _SHAPE_FIELDS if tuple(np.atleast_1d(getattr(fcfg, f))) !=
           tuple(np.atleast_1d(getattr(cfg, f)))]
    if fcfg.num_tasks != cfg.num_tasks:
        bad.append(f"num_tasks: float model {fcfg.num_tasks} vs {cfg.name} {cfg.num_tasks}")
    if bad:
        raise ConfigError(f"float model {fcfg.name!r} does not fit accelerator config "
                          f"{cfg.name!r}:\n  " + "\n  ".join(bad))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy().copy()


def to_weights(model: FloatM3ViT, cfg: AcceleratorConfig) -> Weights:
    """The float model's backbone in kernel-argument layout (float32), cls folded into row 0."""
    check_compatible(model.cfg, cfg)
    bb = model.backbone
    D = cfg.dim
    blocks = list(bb.blocks)
    pos = _np(bb.pos_embed[0])
    pos[0] = _np(bb.pos_embed[0, 0] + bb.cls_token[0, 0])
    attn_w, attn_b = [], []
    for b in blocks:
        qkv_w, qkv_b = _np(b.attn.qkv.weight), _np(b.attn.qkv.bias)
        attn_w.append(np.stack([qkv_w[:D], qkv_w[D:2 * D], qkv_w[2 * D:], _np(b.attn.proj.weight)]))
        attn_b.append(np.stack([qkv_b[:D], qkv_b[D:2 * D], qkv_b[2 * D:], _np(b.attn.proj.bias)]))
    dense = [blocks[layer].mlp for layer in cfg.dense_layers]
    moe = [blocks[layer].mlp for layer in cfg.moe_layers]

    def stack(items, shape):
        return np.stack(items).astype(np.float32) if items else np.zeros(shape, np.float32)

    from moevit.golden.weights import expected_shapes
    sh = expected_shapes(cfg)
    w = Weights(
        patch_embed_weights=_np(bb.patch_embed.proj.weight),
        patch_embed_bias=_np(bb.patch_embed.proj.bias),
        pos_embed=pos,
        norm_weights=np.stack([[_np(b.norm1.weight), _np(b.norm2.weight)] for b in blocks]),
        norm_bias=np.stack([[_np(b.norm1.bias), _np(b.norm2.bias)] for b in blocks]),
        attn_weights=np.stack(attn_w), attn_bias=np.stack(attn_b),
        vit_weights_l1=stack([_np(m.fc1.weight) for m in dense], sh["vit_weights_l1"]),
        vit_bias_l1=stack([_np(m.fc1.bias) for m in dense], sh["vit_bias_l1"]),
        vit_weights_l2=stack([_np(m.fc2.weight) for m in dense], sh["vit_weights_l2"]),
        vit_bias_l2=stack([_np(m.fc2.bias) for m in dense], sh["vit_bias_l2"]),
        moe_weights_l1=stack([_np(m.experts.htoh4.weight) for m in moe], sh["moe_weights_l1"]),
        moe_bias_l1=stack([_np(m.experts.htoh4.bias) for m in moe], sh["moe_bias_l1"]),
        moe_weights_l2=stack([_np(m.experts.h4toh.weight) for m in moe], sh["moe_weights_l2"]),
        moe_bias_l2=stack([_np(m.experts.h4toh.bias) for m in moe], sh["moe_bias_l2"]),
        moe_w_gate_per_task=stack(
            [[_np(m.gate[t].w_gate).T for m in moe] for t in range(cfg.num_tasks)],
            sh["moe_w_gate_per_task"]),
    )
    return w.validate(cfg)


@torch.no_grad()
def load_weights(model: FloatM3ViT, weights: Weights, cfg: AcceleratorConfig) -> FloatM3ViT:
    """Copy a :class:`Weights` set (float or raw) into the float model's backbone, in place.

    The folded ``pos_embed[0]`` is kept as is and ``cls_token`` set to 0, so the model computes
    exactly what the folder describes (and exports back to the same folder)."""
    check_compatible(model.cfg, cfg)
    w = weights.validate(cfg).dequantize(cfg)
    bb = model.backbone

    def put(param, arr):
        param.copy_(torch.as_tensor(np.asarray(arr), dtype=param.dtype).reshape(param.shape))

    put(bb.patch_embed.proj.weight, w.patch_embed_weights)
    put(bb.patch_embed.proj.bias, w.patch_embed_bias)
    put(bb.pos_embed, w.pos_embed)
    bb.cls_token.zero_()
    for layer, b in enumerate(bb.blocks):
        put(b.norm1.weight, w.norm_weights[layer, 0]), put(b.norm2.weight, w.norm_weights[layer, 1])
        put(b.norm1.bias, w.norm_bias[layer, 0]), put(b.norm2.bias, w.norm_bias[layer, 1])
        put(b.attn.qkv.weight, w.attn_weights[layer, :3].reshape(-1, cfg.dim))
        put(b.attn.qkv.bias, w.attn_bias[layer, :3].reshape(-1))
        put(b.attn.proj.weight, w.attn_weights[layer, 3]), put(b.attn.proj.bias, w.attn_bias[layer, 3])
        if cfg.is_moe(layer):
            m = cfg.moe_index(layer)
            e = b.mlp.experts
            put(e.htoh4.weight, w.moe_weights_l1[m]), put(e.htoh4.bias, w.moe_bias_l1[m])
            put(e.h4toh.weight, w.moe_weights_l2[m]), put(e.h4toh.bias, w.moe_bias_l2[m])
            for t in range(cfg.num_tasks):
                put(b.mlp.gate[t].w_gate, w.moe_w_gate_per_task[t, m].T)
        else:
            d = cfg.dense_index(layer)
            put(b.mlp.fc1.weight, w.vit_weights_l1[d]), put(b.mlp.fc1.bias, w.vit_bias_l1[d])
            put(b.mlp.fc2.weight, w.vit_weights_l2[d]), put(b.mlp.fc2.bias, w.vit_bias_l2[d])
    return model


def model_from_weights(weights: Weights, cfg: AcceleratorConfig, *, heads: bool = True,
                       dtype=torch.float32, device="cpu") -> FloatM3ViT:
    """A float model (eval mode) computing exactly ``weights``; heads keep their init."""
    model = FloatM3ViT(FloatConfig.from_accel(cfg), heads=heads)
    load_weights(model, weights, cfg)
    return model.to(device=device, dtype=dtype).eval()


# ----------------------------------------------------------------------------- range checks
def range_problems(weights: Weights, cfg: AcceleratorConfig) -> list[str]:
    """One line per tensor with values outside its fixed-point format (floor quantisation)."""
    return format_range_problems(((name, arr, name) for name, arr in weights.items()), cfg)


def check_ranges(weights: Weights, cfg: AcceleratorConfig) -> None:
    """Raise FormatRangeError listing every tensor (count, worst value and index) that would wrap."""
    bad = range_problems(weights, cfg)
    if bad:
        raise FormatRangeError(
            f"{len(bad)} tensors do not fit the fixed-point formats of preset {cfg.name!r} "
            f"(the accelerator would wrap them):\n  " + "\n  ".join(bad) +
            "\n  rescale these weights (e.g. fold a LayerNorm gain into the next Linear) or "
            "widen the format in the config")


def export_folder(model_or_weights, path, cfg: AcceleratorConfig, *, check: bool = True) -> Weights:
    """Write an Edge-MoE ``*.float32.bin`` folder (cls folded, gates transposed) after the range
    check; returns the exported :class:`Weights`."""
    from moevit.golden.weight_io import save_folder
    w = model_or_weights if isinstance(model_or_weights, Weights) else to_weights(model_or_weights, cfg)
    w = w.dequantize(cfg)
    if check:
        check_ranges(w, cfg)
    save_folder(w, path, cfg)
    return w


def import_folder(path, cfg: AcceleratorConfig, *, heads: bool = True, dtype=torch.float32,
                  device="cpu") -> FloatM3ViT:
    """A float model loaded from an Edge-MoE weights folder."""
    from moevit.golden.weight_io import load_folder
    return model_from_weights(load_folder(path, cfg), cfg, heads=heads, dtype=dtype, device=device)


# ----------------------------------------------------------------------------- M³ViT checkpoints
_EXPERT_KEY = re.compile(r"\.mlp\.experts\.(htoh4|h4toh)\.(weight|bias)$")
_SINGLE_GATE = re.compile(r"^(.*\.mlp\.gate)\.w_gate$")


@dataclass
class LoadReport:
    """What :func:`load_m3vit_checkpoint` did: keys loaded, missing and ignored."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    shards: int = 1


def _torch_load(path: Path, trusted: bool = False) -> dict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trusted)
    except Exception as exc:  # noqa: BLE001 - report any unreadable file the same way
        hint = "" if trusted else (" (if the file also pickles Python objects such as the "
                                   "training args and you trust it, pass trusted=True)")
        raise WeightFileError(f"cannot read checkpoint shard {path}: {exc}{hint}") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise WeightFileError(f"{path} holds no state dict (expected a dict of tensors, or one "
                              f"under 'state_dict'/'model')")
    return obj


def _shard_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise WeightFileError(f"checkpoint {path} does not exist")
    files = [p for p in path.iterdir() if re.fullmatch(r"\d+\.pth", p.name)]
    if not files:
        raise WeightFileError(f"checkpoint directory {path} has no per-rank files 0.pth, 1.pth, ...")
    files.sort(key=lambda p: int(p.stem))
    ranks = [int(p.stem) for p in files]
    if ranks != list(range(len(files))):
        raise WeightFileError(f"checkpoint directory {path} has ranks {ranks}; expected 0..{len(files) - 1}")
    return files


def read_m3vit_checkpoint(path, num_tasks: int, *, trusted: bool = False) -> tuple[dict, LoadReport]:
    """Merge a (sharded) M³ViT checkpoint into one state dict in this model's key space.

    Strips ``module.``; keys of a bare backbone gain ``backbone.``; ``head*``/``norm*`` of a
    classification backbone are dropped; expert tensors are concatenated over ranks along
    dim 0; a single ``mlp.gate.w_gate`` is copied to every task's gate (spec §3).  Files are
    read with ``weights_only`` (tensors and plain containers) unless ``trusted``."""
    files = _shard_files(Path(path))
    shards = [_torch_load(f, trusted) for f in files]
    report = LoadReport(shards=len(files))

    def norm_key(k):
        k = k[len("module."):] if k.startswith("module.") else k
        return k if k.startswith(("backbone.", "decoders.")) else "backbone." + k

    merged: dict[str, torch.Tensor] = {}
    experts: dict[str, list] = {}
    for rank, sd in enumerate(shards):
        for k, v in sd.items():
            nk = norm_key(k)
            if _EXPERT_KEY.search(nk):
                experts.setdefault(nk, []).append(v)
            elif rank == 0:
                if re.match(r"backbone\.(head|norm)[._]", nk) or nk in ("backbone.head", "backbone.norm"):
                    report.dropped.append(k)
                    continue
                merged[nk] = v
    for k, parts in experts.items():
        merged[k] = torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]
    for k in list(merged):
        m = _SINGLE_GATE.match(k)
        if m:
            w = merged.pop(k)
            for t in range(num_tasks):
                merged[f"{m.group(1)}.{t}.w_gate"] = w.clone()
    return merged, report


def load_m3vit_checkpoint(model: FloatM3ViT, path, *, strict_backbone: bool = True,
                          trusted: bool = False) -> LoadReport:
    """Load a (sharded) M³ViT checkpoint into ``model``; returns a :class:`LoadReport`.

    With ``strict_backbone`` a missing or mis-shaped backbone tensor raises WeightFileError
    listing them (heads may be absent: Edge-MoE never shipped them)."""
    sd, report = read_m3vit_checkpoint(path, model.cfg.num_tasks, trusted=trusted)
    own = model.state_dict()
    bad_shape = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                 for k, v in sd.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if bad_shape:
        raise WeightFileError(f"checkpoint {path} does not fit float config {model.cfg.name!r}:\n  "
                              + "\n  ".join(bad_shape) + "\n  (expert tensors are concatenated "
                              "over all rank files; are some ranks missing?)")
    report.unexpected = sorted(k for k in sd if k not in own)
    report.missing = sorted(k for k in own if k not in sd and not k.endswith("num_batches_tracked"))
    report.loaded = sorted(k for k in sd if k in own)
    miss_bb = [k for k in report.missing if k.startswith("backbone.")]
    if strict_backbone and miss_bb:
        raise WeightFileError(f"checkpoint {path} lacks {len(miss_bb)} backbone tensors: "
                              + ", ".join(miss_bb[:8]) + (" ..." if len(miss_bb) > 8 else ""))
    model.load_state_dict({k: sd[k] for k in report.loaded}, strict=False)
    return report


def save_m3vit_checkpoint(model: FloatM3ViT, path, world_size: int = 1, *,
                          single_gate: bool = False) -> list[Path]:
    """Write ``model`` as M³ViT does: ``path/{rank}.pth`` with ``module.``-prefixed keys, rank 0
    holding every non-expert tensor, each rank its E/world_size expert slice.  ``single_gate``
    writes task 0's router as one ``mlp.gate.w_gate`` (an ImageNet-pretrained MoE checkpoint)."""
    E = model.cfg.num_experts
    if E % world_size:
        raise ConfigError(f"{E} experts cannot be split over {world_size} ranks")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    sd = model.state_dict()
    per = E // world_size
    shards = [dict() for _ in range(world_size)]
    for k, v in sd.items():
        if _EXPERT_KEY.search(k):
            for r in range(world_size):
                shards[r]["module." + k] = v[r * per:(r + 1) * per].clone()
            continue
        m = re.match(r"^(.*\.mlp\.gate)\.(\d+)\.w_gate$", k)
        if single_gate and m:
            if m.group(2) == "0":
                shards[0][f"module.{m.group(1)}.w_gate"] = v.clone()
            continue
        shards[0]["module." + k] = v.clone()
    files = []
    for r, s in enumerate(shards):
        f = path / f"{r}.pth"
        torch.save(s, f)
        files.append(f)
    return files
