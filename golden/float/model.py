"""Float reference M³ViT in plain PyTorch (no fastmoe): what the network *means*.

Pre-norm ViT with MoE blocks on ``moe_layers``, one router per task (multi-gate,
``w_gate`` [D, E], no bias), softmax over all experts then top-k without renormalisation
(ties to the lower expert index), experts stored as stacked fastmoe-style ``[E, out, in]``
tensors and evaluated by gathering each expert's tokens, exact erf GELU, the cv²
load-balancing loss, and SETR-PUP task heads (spec m3vit-model.md §1, §2.1).

Parameter names follow M³ViT's ``MultiTaskModel`` (``backbone.blocks.1.mlp.experts.htoh4.weight``,
``backbone.blocks.1.mlp.gate.0.w_gate``, ...) so original checkpoints map one to one
(:mod:`moevit.golden.float.checkpoint`).

    >>> fcfg = FloatConfig.from_accel(preset("edge-moe"))
    >>> model = FloatM3ViT(fcfg).eval()
    >>> res = model(images, task=0, taps=True)     # FloatResult
    >>> res.features, res.prediction, res.taps["l1.gate_logits"], res.routing[1]["experts"]
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from moevit.config import AcceleratorConfig, ViTShape
from moevit.errors import ConfigError, ShapeError
from moevit.golden.attention import score_buffer_rows
from moevit.golden.tasks import CITYSCAPES_TASKS, NYUD_TASKS, default_tasks, task_index

#: weight of the summed gate losses in the total training loss (spec §1.4.3)
BALANCE_LOSS_WEIGHT = 0.01

_ACCEL_DEFAULTS = AcceleratorConfig()


@dataclass(frozen=True)
class FloatConfig(ViTShape):
    """Shape of the float model.  Build with :meth:`from_accel` or :func:`float_preset`.

    Unlike :class:`AcceleratorConfig` it accepts any head dim (the paper's ViT-S has 12
    heads of 32, which the hardware's shift-only attention scale cannot express).
    """

    name: str = "custom"
    # model sizes default to the accelerator's defaults (the edge-moe preset): one source
    image_channels: int = _ACCEL_DEFAULTS.image_channels
    image_height: int = _ACCEL_DEFAULTS.image_height
    image_width: int = _ACCEL_DEFAULTS.image_width
    patch_size: int = _ACCEL_DEFAULTS.patch_size
    dim: int = _ACCEL_DEFAULTS.dim
    depth: int = _ACCEL_DEFAULTS.depth
    heads: int = _ACCEL_DEFAULTS.heads
    mlp_hidden: int = _ACCEL_DEFAULTS.mlp_hidden
    num_experts: int = _ACCEL_DEFAULTS.num_experts
    top_k: int = _ACCEL_DEFAULTS.top_k
    expert_hidden: int = _ACCEL_DEFAULTS.expert_hidden
    moe_layers: tuple[int, ...] = _ACCEL_DEFAULTS.moe_layers
    layernorm_eps: float = _ACCEL_DEFAULTS.layernorm_eps
    #: (name, output channels) per task, in task-id order
    tasks: tuple[tuple[str, int], ...] = CITYSCAPES_TASKS
    #: channels of the PUP head's conv stages (256 in M³ViT)
    head_channels: int = 256
    #: accelerator layout of the "score_buffer"/"softmax_info" taps (set by from_accel; None =
    #: no score_buffer tap and softmax_info of width 2*heads)
    attn_parallel: int | None = None
    softmax_info_width: int | None = None
    # the score buffer's geometry (with attn_parallel set), the accelerator's own definitions
    query_blocks = AcceleratorConfig.query_blocks
    head_lanes = AcceleratorConfig.head_lanes

    def __post_init__(self):
        def need(cond, msg):
            if not cond:
                raise ConfigError(f"float config {self.name!r}: {msg}")
        self._check_vit_shape(need)
        need(len(self.tasks) >= 1, "needs at least one task")

    @classmethod
    def from_accel(cls, cfg: AcceleratorConfig, *, tasks=None, head_channels=None) -> "FloatConfig":
        """The float model of an accelerator preset (same sizes, tasks, eps)."""
        if tasks is None:
            tasks = default_tasks(cfg.num_tasks)
        if head_channels is None:
            head_channels = 256 if cfg.dim >= 128 else max(16, cfg.dim)
        return cls(name=cfg.name, image_channels=cfg.image_channels,
                   image_height=cfg.image_height, image_width=cfg.image_width,
                   patch_size=cfg.patch_size, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
                   mlp_hidden=cfg.mlp_hidden, num_experts=cfg.num_experts, top_k=cfg.top_k,
                   expert_hidden=cfg.expert_hidden, moe_layers=tuple(cfg.moe_layers),
                   layernorm_eps=cfg.layernorm_eps, tasks=tuple(tasks), head_channels=head_channels,
                   attn_parallel=cfg.attn_parallel, softmax_info_width=cfg.softmax_info_width)

    @classmethod
    def vit_s(cls, image_height: int = 480, image_width: int = 640, tasks=NYUD_TASKS) -> "FloatConfig":
        """The paper's M³ViT ViT-S: D=384, 12 heads of 32, depth 12, dense MLP 4D, 16 experts,
        top-4, expert hidden = D, MoE on odd blocks, multi-gate (default NYUD 480x640)."""
        return cls(name="vit-s", image_height=image_height, image_width=image_width, dim=384,
                   depth=12, heads=12, mlp_hidden=1536, num_experts=16, top_k=4,
                   expert_hidden=384, moe_layers=(1, 3, 5, 7, 9, 11), tasks=tuple(tasks))

    # derived (grid, tokens, head_dim: ViTShape)
    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def task_index(self, task) -> int:
        """Task id from an int or a task name; clear error otherwise."""
        return task_index(self.tasks, task)

    def replace(self, **changes) -> "FloatConfig":
        return dataclasses.replace(self, **changes)


def float_preset(name: str) -> FloatConfig:
    """``vit-s`` or any :mod:`moevit.config` preset name (``edge-moe``, ``tiny``, ``zcu104``)."""
    if name in ("vit-s", "vit_s", "vit-small"):
        return FloatConfig.vit_s()
    from moevit.config import preset
    return FloatConfig.from_accel(preset(name))


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU."""
    return F.gelu(x, approximate="none")


# ----------------------------------------------------------------------------- backbone parts
class PatchEmbed(nn.Module):
    def __init__(self, c: FloatConfig):
        super().__init__()
        self.proj = nn.Conv2d(c.image_channels, c.dim, c.patch_size, stride=c.patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # [N, h*w, D], row-major over (h, w)


class Attention(nn.Module):
    def __init__(self, c: FloatConfig):
        super().__init__()
        self.cfg = c
        self.heads, self.head_dim = c.heads, c.head_dim
        self.scale = c.head_dim ** -0.5
        self.qkv = nn.Linear(c.dim, 3 * c.dim, bias=True)
        self.proj = nn.Linear(c.dim, c.dim)

    def forward(self, x, taps=None, prefix=""):
        n, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)  # [q | k | v], heads contiguous inside each
        qh, kh, vh = (a.reshape(n, t, self.heads, self.head_dim).transpose(1, 2) for a in (q, k, v))
        if taps is None:  # fused kernel; same math: softmax(q·kᵀ·scale)·v
            av = F.scaled_dot_product_attention(qh, kh, vh, scale=self.scale)
            return self.proj(av.transpose(1, 2).reshape(n, t, d))
        s = (qh @ kh.transpose(-1, -2)) * self.scale                  # [N, heads, Tq, Tk]
        av = (s.softmax(dim=-1) @ vh).transpose(1, 2).reshape(n, t, d)
        out = self.proj(av)
        scores = s.permute(0, 2, 3, 1)                                 # [N, Tq, Tk, heads]
        mx = s.amax(dim=-1)                                            # [N, heads, T]
        recip = 1.0 / torch.exp(s - mx[..., None]).sum(dim=-1)
        width = self.cfg.softmax_info_width or 2 * self.heads
        info = s.new_zeros(n, t, width)
        info[..., :2 * self.heads] = torch.stack([recip, mx], dim=-1).transpose(1, 2).reshape(n, t, -1)
        taps[prefix + "q"], taps[prefix + "k"], taps[prefix + "v"] = q, k, v
        taps[prefix + "scores"] = scores
        taps[prefix + "softmax_info"] = info                          # {recip_h, max_h}..., pads 0
        if self.cfg.attn_parallel:
            taps[prefix + "score_buffer"] = self._score_buffer(scores)
        taps[prefix + "av"], taps[prefix + "proj"] = av, out
        return out

    def _score_buffer(self, scores):
        """Float scores in the ``attn`` DRAM layout [N, B, T, P, head_lanes]; junk slots 0
        (the slots of :func:`moevit.golden.attention.score_buffer_rows`)."""
        n, t, _, h = scores.shape
        rows, valid = score_buffer_rows(self.cfg)
        rows = torch.from_numpy(np.where(valid, rows, 0)).to(scores.device)
        valid = torch.from_numpy(valid).to(scores.device)
        k = torch.arange(t, device=scores.device)[None, :, None].expand(rows.shape)
        picked = scores[:, rows, k, :]                                # [N, B, T, P, h]
        buf = scores.new_zeros(*picked.shape[:-1], self.cfg.head_lanes)
        buf[..., :h] = picked * valid[None, ..., None]
        return buf


class Mlp(nn.Module):
    def __init__(self, c: FloatConfig):
        super().__init__()
        self.fc1 = nn.Linear(c.dim, c.mlp_hidden)
        self.fc2 = nn.Linear(c.mlp_hidden, c.dim)

    def forward(self, x, task=0, taps=None, prefix=""):
        h = gelu(self.fc1(x))
        if taps is not None:
            taps[prefix + "hidden"] = h
        return self.fc2(h)


class StackedLinear(nn.Module):
    """E linear layers stored as fastmoe ``FMoELinear``: weight [E, out, in], bias [E, out]."""

    def __init__(self, num_experts: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_experts, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(num_experts, out_features))
        # fastmoe default: kaiming_uniform_(a=sqrt 5) on the 3-D tensor (fan_in = out*in, §1.4.5)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def expert(self, e: int, x):
        return F.linear(x, self.weight[e], self.bias[e])


class Experts(nn.Module):
    def __init__(self, c: FloatConfig):
        super().__init__()
        self.htoh4 = StackedLinear(c.num_experts, c.dim, c.expert_hidden)
        self.h4toh = StackedLinear(c.num_experts, c.expert_hidden, c.dim)


class Gate(nn.Module):
    """NoisyGate_VMoE at noise 0: ``logits = x @ w_gate`` ([D, E], no bias)."""

    def __init__(self, dim: int, num_experts: int):
        super().__init__()
        self.w_gate = nn.Parameter(torch.empty(dim, num_experts))
        nn.init.kaiming_uniform_(self.w_gate, a=math.sqrt(5))

    def forward(self, x):
        return x @ self.w_gate


def cv_squared(x: torch.Tensor) -> torch.Tensor:
    """var(x) / (mean(x)² + 1e-10) with the unbiased variance; 0 for a single element."""
    x = x.to(torch.float32) if not x.is_floating_point() else x
    if x.numel() <= 1:
        return x.new_zeros(())
    return x.var() / (x.mean() ** 2 + 1e-10)


def topk_lower_index(logits: torch.Tensor, k: int):
    """Top-k along the last axis, descending, ties to the lower index (stable sort)."""
    order = torch.sort(logits, dim=-1, descending=True, stable=True).indices[..., :k]
    return order


class MoE(nn.Module):
    """Multi-gate MoE: shared experts, one router per task (spec §1.4)."""

    def __init__(self, c: FloatConfig):
        super().__init__()
        self.num_experts, self.top_k = c.num_experts, c.top_k
        self.gate = nn.ModuleList(Gate(c.dim, c.num_experts) for _ in range(c.num_tasks))
        self.experts = Experts(c)
        self.balance_loss = None  # set by each forward (0 in eval)

    def route(self, x, task: int):
        """-> (logits [M, E], experts [M, k], probs [M, k]) for flat tokens x [M, D]."""
        logits = self.gate[task](x)
        probs_all = logits.softmax(dim=-1)
        experts = topk_lower_index(logits, self.top_k)  # softmax is monotone: same order
        probs = probs_all.gather(-1, experts)
        return logits, experts, probs

    def forward(self, x, task=0, taps=None, prefix=""):
        n, t, d = x.shape
        flat = x.reshape(n * t, d)
        logits, experts, probs = self.route(flat, task)
        out = torch.zeros_like(flat)
        e1, e2 = self.experts.htoh4, self.experts.h4toh
        # gather each expert's (token, slot) pairs, ascending token order as the hardware queues
        flat_e = experts.reshape(-1)
        order = torch.argsort(flat_e, stable=True)
        counts = torch.bincount(flat_e, minlength=self.num_experts).tolist()
        tok_all = order // self.top_k
        p_all = probs.reshape(-1)[order]
        start = 0
        for e, cnt in enumerate(counts):
            if cnt == 0:
                continue
            tok = tok_all[start:start + cnt]
            p = p_all[start:start + cnt]
            start += cnt
            y = e2.expert(e, gelu(e1.expert(e, flat.index_select(0, tok))))
            out.index_add_(0, tok, y * p[:, None])
        if self.training:
            gates = torch.zeros_like(logits).scatter(-1, experts, probs)  # dense [M, E]
            importance = gates.sum(0)
            load = (gates > 0).sum(0)
            self.balance_loss = cv_squared(importance) + cv_squared(load)
        else:
            self.balance_loss = logits.new_zeros(())
        tpe = torch.stack([torch.bincount(experts.reshape(n, -1)[i], minlength=self.num_experts)
                           for i in range(n)])
        routing = dict(experts=experts.reshape(n, t, self.top_k),
                       probs=probs.reshape(n, t, self.top_k), tokens_per_expert=tpe)
        if taps is not None:
            taps[prefix + "gate_logits"] = logits.reshape(n, t, -1)
        return out.reshape(n, t, d), routing


class Block(nn.Module):
    def __init__(self, c: FloatConfig, moe: bool):
        super().__init__()
        self.is_moe = moe
        self.norm1 = nn.LayerNorm(c.dim, eps=c.layernorm_eps)
        self.attn = Attention(c)
        self.norm2 = nn.LayerNorm(c.dim, eps=c.layernorm_eps)
        self.mlp = MoE(c) if moe else Mlp(c)

    def forward(self, x, task=0, taps=None, prefix=""):
        h = self.norm1(x)
        a = self.attn(h, taps, prefix)
        x = x + a
        h2 = self.norm2(x)
        routing = None
        if self.is_moe:
            m, routing = self.mlp(h2, task, taps, prefix)
        else:
            m = self.mlp(h2, task, taps, prefix)
        out = x + m
        if taps is not None:
            taps[prefix + "ln1"], taps[prefix + "resid1"] = h, x
            taps[prefix + "ln2"], taps[prefix + "mlp_out"], taps[prefix + "out"] = h2, m, out
        return out, routing


class VisionTransformerMoE(nn.Module):
    """The backbone: patch embed + cls + pos, ``depth`` pre-norm blocks, no final norm."""

    def __init__(self, c: FloatConfig):
        super().__init__()
        self.cfg = c
        self.patch_embed = PatchEmbed(c)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, c.tokens, c.dim))
        self.blocks = nn.ModuleList(Block(c, layer in c.moe_layers) for layer in range(c.depth))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, images, task=0, taps=None):
        x = self.patch_embed(images)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        if taps is not None:
            taps["patch_embed"] = x
        routing, losses = {}, []
        for layer, blk in enumerate(self.blocks):
            x, r = blk(x, task, taps, f"l{layer}.")
            if r is not None:
                routing[layer] = r
                losses.append(blk.mlp.balance_loss)
        loss = torch.stack(losses).sum() if losses else x.new_zeros(())
        return x, routing, loss


# ----------------------------------------------------------------------------- heads
class PUPHead(nn.Module):
    """SETR-PUP progressive-upsampling head (spec §2.1): LN, drop cls, 4x (conv3x3, BN, ReLU)
    with x2 bilinear after the first three, conv1x1 to ``out_channels``, x2 bilinear."""

    def __init__(self, c: FloatConfig, out_channels: int):
        super().__init__()
        self.grid = (c.grid_h, c.grid_w)
        self.norm = nn.LayerNorm(c.dim, eps=c.layernorm_eps)
        ch = c.head_channels
        self.convs = nn.ModuleList(
            nn.Conv2d(c.dim if i == 0 else ch, ch, 3, padding=1) for i in range(4))
        self.bns = nn.ModuleList(nn.BatchNorm2d(ch) for _ in range(4))
        self.cls = nn.Conv2d(ch, out_channels, 1)

    def forward(self, tokens):
        n, t, d = tokens.shape
        x = self.norm(tokens[:, 1:])
        x = x.transpose(1, 2).reshape(n, d, *self.grid)
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            x = F.relu(bn(conv(x)))
            if i < 3:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.cls(x)
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


# ----------------------------------------------------------------------------- full model
@dataclass
class FloatResult:
    """One task's pass.  ``features`` = block-``depth-1`` output [N, T, D] (what the
    accelerator returns); ``prediction`` = head output [N, C_out, H, W] (None without head);
    ``routing[layer]`` = dict(experts [N,T,k], probs [N,T,k], tokens_per_expert [N,E]);
    ``taps`` = stage name -> tensor [N, ...] (golden-model tap names); ``balance_loss`` =
    Σ over MoE layers of cv²(importance)+cv²(load) (0 in eval; weight it by BALANCE_LOSS_WEIGHT)."""

    task: int
    features: torch.Tensor
    prediction: torch.Tensor | None
    routing: dict = field(default_factory=dict)
    taps: dict = field(default_factory=dict)
    balance_loss: torch.Tensor | None = None


class FloatM3ViT(nn.Module):
    """Multi-task M³ViT: shared backbone, one router per task in every MoE block, one PUP head
    per task.  ``model(images, task=t)`` runs task t only (its routers and its head);
    ``task="all"`` runs each task's full pass and returns {task: FloatResult}."""

    def __init__(self, cfg: FloatConfig | AcceleratorConfig, *, heads: bool = True):
        super().__init__()
        if isinstance(cfg, AcceleratorConfig):
            cfg = FloatConfig.from_accel(cfg)
        self.cfg = cfg
        self.backbone = VisionTransformerMoE(cfg)
        self.decoders = nn.ModuleDict(
            {name: PUPHead(cfg, ch) for name, ch in cfg.tasks}) if heads else None

    def forward(self, images, task=0, taps=False, head=True):
        if isinstance(task, str) and task == "all":
            return {t: self.forward(images, t, taps, head) for t in range(self.cfg.num_tasks)}
        t = self.cfg.task_index(task)
        images = self._check_images(images)
        tap_dict = {} if taps else None
        feats, routing, loss = self.backbone(images, t, tap_dict)
        pred = None
        if head and self.decoders is not None:
            pred = self.decoders[self.cfg.tasks[t][0]](feats)
            pred = F.interpolate(pred, size=images.shape[-2:], mode="bilinear", align_corners=False)
        if tap_dict is not None and taps is not True:
            tap_dict = {k: v for k, v in tap_dict.items() if k in set(taps)}
        return FloatResult(t, feats, pred, routing, tap_dict or {}, loss)

    def _check_images(self, images):
        c = self.cfg
        if not torch.is_tensor(images):
            images = torch.as_tensor(images)
        if images.dtype == torch.uint8:
            images = images.to(torch.float32) / 256.0
        if images.dim() == 3:
            images = images[None]
        want = (c.image_channels, c.image_height, c.image_width)
        if images.dim() != 4 or tuple(images.shape[1:]) != want:
            raise ShapeError(f"images of shape {tuple(images.shape)} do not fit float config "
                             f"{c.name!r}: expected [N, {want[0]}, {want[1]}, {want[2]}] or "
                             f"[{want[0]}, {want[1]}, {want[2]}]")
        p = next(self.parameters())
        return images.to(device=p.device, dtype=p.dtype)


def taps_to_golden_layout(taps: dict) -> dict:
    """Float taps -> float64 numpy arrays (same names and shapes as the golden taps, [N, ...])."""
    return {name: v.detach().cpu().double().numpy() for name, v in taps.items()}


def macs(c: FloatConfig, task: int | None = 0, *, head: bool = True) -> dict:
    """Multiply-accumulates per image for one task's pass (spec §2.1: backbone + one PUP head),
    counting every Linear/conv and the two attention matmuls; MoE counts the gate and k experts
    per token.  Returns dict(backbone=, head=, total=)."""
    T, D, gh, gw = c.tokens, c.dim, c.grid_h, c.grid_w
    n_p = gh * gw
    bb = n_p * D * c.image_channels * c.patch_size ** 2
    for layer in range(c.depth):
        bb += T * D * 3 * D + 2 * T * T * D + T * D * D
        if layer in c.moe_layers:
            bb += T * D * c.num_experts + c.top_k * T * 2 * D * c.expert_hidden
        else:
            bb += T * 2 * D * c.mlp_hidden
    hd = 0
    if head and task is not None:
        ch, out_ch = c.head_channels, c.tasks[c.task_index(task)][1]
        hd = n_p * ch * D * 9 + sum(n_p * 4 ** i * ch * ch * 9 for i in (1, 2, 3)) \
            + n_p * 64 * ch * out_ch
    return dict(backbone=bb, head=hd, total=bb + hd)
