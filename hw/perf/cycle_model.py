"""Accelerator cycle model: the spec §6.2 schedule, stage by stage, from an AcceleratorConfig.

Each stage has compute cycles (:mod:`moevit.hw.perf.units`), weight bytes (fetched once per
batch into a named on-chip buffer) and activation bytes (per image; only what crosses DRAM).
:func:`run` plays the stages in order against the DRAM model (:mod:`moevit.hw.perf.dram`):

- a stage takes max(compute, its activation traffic / DRAM bandwidth);
- weights load in program order into their buffer (the linear engine's ping/pong alternate,
  spec §4.3; LayerNorm parameters, the gate and pos_embed have their own buffers) as soon as
  that buffer's previous user has finished, using the DRAM bandwidth the running stage leaves
  over; a stage whose weights are not complete when it should start stalls until they are.

Activations: with ``cfg.activations_on_chip`` False every tensor round-trips DRAM as in
Edge-MoE (including the attention unit re-reading K and V once per query block).  With it
True, one image's tensors (~1 MB for edge-moe shapes) stay on chip, so at batch 1 DRAM carries
only weights, the image and the output.  The batched schedule runs each stage for all images
of the batch before the next, fetching each weight set once per batch; B images' tensors do
not fit on chip, so tensors crossing a stage boundary go through DRAM (written once, read once
per consumer) while the attention's K/V re-reads and score buffer stay on chip.  A dense MLP's
(or an expert's) FC1 and FC2 weights sit in ping and pong together, so the batch alternates
FC1/FC2 per image (per token chunk) and the hidden rows never leave the chip.

Patch embedding runs on the linear engine (its conv weights stream into ping like any linear
layer's, once per batch, instead of Edge-MoE's separate conv unit with one-time weights).
Not modelled: DRAM page/refresh effects beyond the efficiency factor, AXI latency between
bursts, host overheads.  The attention and linear-engine stages come from RTL-checked
unit models; LayerNorm, residual and gate are rate models (see units).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError
from moevit.hw.perf import units as U
from moevit.hw.perf.dram import DramModel

#: stage kinds, in plot order, and the unit that computes each
KINDS = {"patch_embed": "linear engine", "layernorm": "layernorm", "linear": "linear engine",
         "attention": "attention", "gate": "moe gate", "zero": "residual",
         "expert": "linear engine", "residual": "residual"}


@dataclass(frozen=True)
class Stage:
    """One stage of the schedule for one image (``expert`` stages: for the batch's tokens)."""

    name: str
    kind: str
    layer: int | None
    compute_cycles: int
    weight_bytes: int  # fetched once per batch
    act_bytes: int  # DRAM bytes for the activations (already for the whole batch)
    macs: int  # multiply-accumulates (whole batch), for GOP figures and the roofline
    buffer: str | None  # on-chip buffer the weights load into


@dataclass
class StageTime:
    stage: Stage
    start: float
    stall_cycles: float  # waiting for this stage's weights
    compute_cycles: float
    act_dram_cycles: float
    cycles: float  # stall + max(compute, act_dram)

    @property
    def memory_cycles(self) -> float:
        """Cycles the stage spends beyond its compute because of DRAM."""
        return self.cycles - self.compute_cycles

    @property
    def bound(self) -> str:
        return "memory" if self.memory_cycles > 0.01 * self.cycles else "compute"


@dataclass
class ModelResult:
    cfg_name: str
    batch: int
    clock_hz: float
    dram: dict
    activations: str
    routing: str
    times: list = field(repr=False)

    @property
    def cycles(self) -> float:
        return sum(t.cycles for t in self.times)

    @property
    def ms_per_batch(self) -> float:
        return 1e3 * self.cycles / self.clock_hz

    @property
    def ms_per_image(self) -> float:
        return self.ms_per_batch / self.batch

    @property
    def images_per_s(self) -> float:
        return 1e3 / self.ms_per_image

    @property
    def dram_bytes(self) -> int:
        return sum(t.stage.weight_bytes + t.stage.act_bytes for t in self.times)

    @property
    def macs(self) -> int:
        return sum(t.stage.macs for t in self.times)

    def by_kind(self) -> dict:
        """Cycles per stage kind, split into compute and memory (stall + excess DRAM)."""
        out = {}
        for t in self.times:
            d = out.setdefault(t.stage.kind, dict(compute=0.0, memory=0.0, dram_bytes=0,
                                                  macs=0))
            d["compute"] += t.compute_cycles
            d["memory"] += t.memory_cycles
            d["dram_bytes"] += t.stage.weight_bytes + t.stage.act_bytes
            d["macs"] += t.stage.macs
        return out

    def summary(self) -> dict:
        bound = {"compute": 0, "memory": 0}
        for t in self.times:
            bound[t.bound] += 1
        return dict(preset=self.cfg_name, batch=self.batch, clock_mhz=self.clock_hz / 1e6,
                    cycles=round(self.cycles), ms_per_image=round(self.ms_per_image, 4),
                    images_per_s=round(self.images_per_s, 2),
                    dram_mb_per_image=round(self.dram_bytes / self.batch / 1e6, 3),
                    gmac_per_image=round(self.macs / self.batch / 1e9, 4),
                    stages_compute_bound=bound["compute"], stages_memory_bound=bound["memory"],
                    memory_cycles=round(sum(t.memory_cycles for t in self.times)),
                    dram=self.dram, activations=self.activations, routing=self.routing)

    def stage_rows(self) -> list[dict]:
        return [dict(name=t.stage.name, kind=t.stage.kind, layer=t.stage.layer,
                     unit=KINDS[t.stage.kind], compute_cycles=round(t.compute_cycles),
                     stall_cycles=round(t.stall_cycles),
                     act_dram_cycles=round(t.act_dram_cycles), cycles=round(t.cycles),
                     weight_bytes=t.stage.weight_bytes, act_bytes=t.stage.act_bytes,
                     macs=t.stage.macs, bound=t.bound) for t in self.times]


# ------------------------------------------------------------------------------ routing
def uniform_routing(cfg: AcceleratorConfig, images: int = 1) -> dict[int, np.ndarray]:
    """Tokens per expert with the tokens x top_k assignments spread as evenly as possible
    (every expert used: the most weight traffic a MoE layer can cause)."""
    n = images * cfg.tokens * cfg.top_k
    counts = np.full(cfg.num_experts, n // cfg.num_experts, dtype=np.int64)
    counts[: n % cfg.num_experts] += 1
    return {layer: counts.copy() for layer in cfg.moe_layers}


@lru_cache(maxsize=8)
def golden_routing(cfg: AcceleratorConfig, seed: int = 0, task: int = 0) -> dict[int, np.ndarray]:
    """Tokens per expert of each MoE layer from the golden model on seeded weights and the
    synthetic image of ``seed`` (what a real image of the same statistics would route)."""
    from moevit.golden.model import GoldenModel
    from moevit.golden.weight_io import synthetic_image
    from moevit.golden.weights import seeded_weights

    res = GoldenModel(cfg, seeded_weights(cfg, seed)).run(synthetic_image(cfg, seed), task=task)
    return {layer: np.asarray(r["tokens_per_expert"][0], dtype=np.int64)
            for layer, r in res.routing.items()}


def _check_routing(cfg: AcceleratorConfig, routing: dict, batch: int) -> None:
    if set(routing) != set(cfg.moe_layers):
        raise ConfigError(f"routing has layers {sorted(routing)}; the config's MoE layers are "
                          f"{list(cfg.moe_layers)}")
    for layer, counts in routing.items():
        c = np.asarray(counts)
        want = batch * cfg.tokens * cfg.top_k
        if c.shape != (cfg.num_experts,) or c.min() < 0 or c.sum() != want:
            raise ConfigError(
                f"routing of layer {layer}: need {cfg.num_experts} non-negative token counts "
                f"summing to batch x tokens x top_k = {want} (got {c.tolist()})")


# ------------------------------------------------------------------------------ stages
def stages(cfg: AcceleratorConfig, batch: int = 1, routing: dict | None = None) -> list[Stage]:
    """The schedule of spec §6.2 for a batch: each stage for all ``batch`` images.

    ``routing``: tokens per expert per MoE layer for the whole batch (default: uniform)."""
    if batch < 1:
        raise ConfigError(f"batch must be >= 1 (got {batch})")
    routing = uniform_routing(cfg, batch) if routing is None else routing
    _check_routing(cfg, routing, batch)
    B, T, D = batch, cfg.tokens, cfg.dim
    fm = cfg.formats.fm.width // 8
    wt = cfg.formats.wt_linear.width // 8
    bias = cfg.formats.wt_bias.width // 8
    row = D * fm  # one token row of x / tmp in bytes
    act = T * row  # one [T][D] tensor
    qb = cfg.query_blocks
    score_bytes = qb * T * cfg.attn_parallel * cfg.head_lanes * fm
    info_bytes = T * cfg.softmax_info_width * fm
    offchip = not cfg.activations_on_chip  # every tensor through DRAM, as Edge-MoE
    spill = cfg.activations_on_chip and B > 1  # stage-crossing tensors of B images via DRAM

    def tensors(nbytes: int) -> int:
        """DRAM bytes of stage-crossing tensors (per image) for the whole batch."""
        return B * nbytes if (offchip or spill) else 0

    out: list[Stage] = []
    linear_count = [0]

    def linear(name, layer, n_in, n_out, tokens, weights, act_bytes, gelu=False, kind="linear"):
        buf = ("ping", "pong")[linear_count[0] % 2]
        linear_count[0] += 1
        cycles = U.linear_cycles(cfg, tokens, n_in, n_out, gelu, patch=kind == "patch_embed")
        out.append(Stage(name, kind, layer, cycles,
                         weights, act_bytes, tokens * n_in * n_out, buf))

    def lin_weights(n_in, n_out):
        return n_in * n_out * wt + n_out * bias

    # patch embedding on the linear engine (im2col rows of C*p*p pixels): conv weights, bias
    # and pos_embed (fm_t) once per batch; pixels in (always from DRAM), x out
    img = cfg.image_channels * cfg.image_height * cfg.image_width * cfg.formats.pixel.width // 8
    n_in = cfg.image_channels * cfg.patch_size ** 2
    pe_weights = (n_in * D * cfg.formats.wt_patch_embed.width // 8
                  + D * cfg.formats.wt_bias.width // 8 + T * D * fm)
    linear("patch_embed", None, n_in, D, B * cfg.num_patches, pe_weights,
           B * img + tensors(act), kind="patch_embed")
    norm_bytes = 2 * 2 * D * cfg.formats.wt_norm.width // 8  # gain + bias of LN1 and LN2
    for L in range(cfg.depth):
        p = f"l{L}."
        out.append(Stage(p + "ln1", "layernorm", L, B * U.layernorm_cycles(cfg), norm_bytes,
                         tensors(2 * act), 0, "norms"))
        for nm in ("q", "k"):
            linear(p + nm, L, D, D, B * T, lin_weights(D, D), tensors(2 * act))
        qk, av = U.attention_cycles(cfg)
        # Q·Kᵀ: off chip, K is re-read per query block and the score buffer written
        qk_act = (B * (act + qb * act + score_bytes + info_bytes) if offchip
                  else tensors(2 * act))
        out.append(Stage(p + "qk_softmax", "attention", L, B * qk, 0, qk_act,
                         B * T * T * D, None))
        linear(p + "v", L, D, D, B * T, lin_weights(D, D), tensors(2 * act))
        av_act = (B * (qb * act + score_bytes + info_bytes + act) if offchip
                  else tensors(2 * act))
        out.append(Stage(p + "av", "attention", L, B * av, 0, av_act, B * T * T * D, None))
        linear(p + "proj", L, D, D, B * T, lin_weights(D, D), tensors(2 * act))
        out.append(Stage(p + "residual1", "residual", L, B * U.residual_cycles(cfg), 0,
                         tensors(3 * act), 0, None))
        out.append(Stage(p + "ln2", "layernorm", L, B * U.layernorm_cycles(cfg), 0,
                         tensors(2 * act), 0, None))
        if cfg.is_moe(L):
            E, H = cfg.num_experts, cfg.expert_hidden
            out.append(Stage(p + "gate", "gate", L, B * U.gate_cycles(cfg), E * D * wt,
                             tensors(act), B * T * D * E, "gate"))
            out.append(Stage(p + "zero", "zero", L, B * U.zero_cycles(cfg), 0,
                             tensors(act), 0, None))
            for e, n in enumerate(np.asarray(routing[L]).tolist()):
                if n == 0:
                    continue  # unused experts are never fetched (spec §4.6.7)
                rows_in = n * row if (offchip or spill) else 0
                hid = n * H * fm if offchip else 0  # the hidden rows stay on chip otherwise
                linear(f"{p}e{e}.fc1", L, D, H, n, lin_weights(D, H), rows_in + hid,
                       gelu=True, kind="expert")
                # FC2 reads the hidden rows and read-modify-writes the output rows
                linear(f"{p}e{e}.fc2", L, H, D, n, lin_weights(H, D), hid + 2 * rows_in,
                       kind="expert")
        else:
            M = cfg.mlp_hidden
            hid = B * T * M * fm if offchip else 0
            linear(p + "fc1", L, D, M, B * T, lin_weights(D, M), tensors(act) + hid, gelu=True)
            linear(p + "fc2", L, M, D, B * T, lin_weights(M, D), hid + tensors(act))
        last = L == cfg.depth - 1
        # the encoder output leaves the chip after the last residual in every mode
        res2 = tensors(3 * act) if not last or offchip or spill else B * act
        out.append(Stage(p + "residual2", "residual", L, B * U.residual_cycles(cfg), 0,
                         res2, 0, None))
    return out


# ------------------------------------------------------------------------------ timing
def simulate(stage_list: list[Stage], dram: DramModel) -> list[StageTime]:
    """Play the stages in order with weight prefetch (see the module docstring)."""
    bw = dram.bytes_per_cycle
    n = len(stage_list)
    remaining = [float(s.weight_bytes) for s in stage_list]
    prev_user: list[int | None] = []
    last: dict[str, int] = {}
    for i, s in enumerate(stage_list):
        prev_user.append(last.get(s.buffer) if s.buffer else None)
        if s.buffer:
            last[s.buffer] = i
    t = 0.0
    times = []
    nxt = 0  # first stage whose weight load may be incomplete (loads are in program order)
    for i, s in enumerate(stage_list):
        pending = sum(remaining[j] for j in range(nxt, i + 1))
        for j in range(nxt, i + 1):
            remaining[j] = 0.0
        nxt = i + 1
        stall = pending / bw
        start = t + stall
        act_c = s.act_bytes / bw
        dur = max(float(s.compute_cycles), act_c)
        spare = dur * bw - s.act_bytes
        while nxt < n and spare > 0:
            pu = prev_user[nxt]
            if pu is not None and pu >= i:  # its buffer is still in use
                break
            take = min(spare, remaining[nxt])
            remaining[nxt] -= take
            spare -= take
            if remaining[nxt] > 0:
                break
            nxt += 1
        times.append(StageTime(s, start, stall, float(s.compute_cycles), act_c, stall + dur))
        t = start + dur
    return times


def run(cfg: AcceleratorConfig, batch: int = 1, routing: dict | str | None = None,
        routing_label: str | None = None) -> ModelResult:
    """Model one batch.  ``routing``: tokens per expert per MoE layer for *one image*
    (scaled by ``batch``: the batch's images route alike), ``"uniform"`` (default) or
    ``"golden"`` (:func:`golden_routing`, seed 0)."""
    label = routing_label
    if routing is None or isinstance(routing, str):
        kind = routing or "uniform"
        if kind == "uniform":
            per_image = uniform_routing(cfg, 1)
        elif kind == "golden":
            per_image = golden_routing(cfg)
        else:
            raise ConfigError(f"routing {kind!r}: use 'uniform', 'golden' or a dict of "
                              f"tokens per expert per MoE layer")
        label = label or kind
    else:
        per_image, label = routing, label or "given"
    batch_routing = {L: np.array(c, dtype=np.int64) * batch for L, c in per_image.items()}
    st = stages(cfg, batch, batch_routing)
    dram = DramModel.from_config(cfg)
    mode = ("off chip (every tensor through DRAM)" if not cfg.activations_on_chip else
            "on chip" if batch == 1 else
            "on chip within a stage; stage-crossing tensors of the batch through DRAM")
    return ModelResult(cfg.name, batch, cfg.clock_hz, dram.describe(), mode, label,
                       simulate(st, dram))


def encoder_gop(cfg: AcceleratorConfig) -> float:
    """Operations per image (2 per MAC) of the encoder at top-k routing: patch embedding,
    Q/K/V/proj, QKᵀ, AV, dense MLPs, MoE gate and top-k experts (spec §11: 1.565 GOP)."""
    T, D = cfg.tokens, cfg.dim
    macs = cfg.num_patches * cfg.image_channels * cfg.patch_size ** 2 * D
    for L in range(cfg.depth):
        macs += 4 * T * D * D + 2 * T * T * D
        if cfg.is_moe(L):
            macs += T * D * cfg.num_experts + cfg.top_k * T * 2 * D * cfg.expert_hidden
        else:
            macs += T * 2 * D * cfg.mlp_hidden
    return 2 * macs / 1e9


__all__ = ["Stage", "StageTime", "ModelResult", "stages", "simulate", "run", "uniform_routing",
           "golden_routing", "encoder_gop", "KINDS"]


def overlapped_cycles(batched: ModelResult, single: ModelResult) -> float:
    """What-if for the batched schedule: a sequencer that keeps every unit busy on different
    images of the batch (e.g. the attention unit on image i while the linear engine runs V or
    the next stage for image i+1), which the §6.2 schedule does not do.

    Bound-style estimate: the busiest unit's (or the DRAM's) total cycles for the batch, plus
    one image's fill/drain (its sequential time minus its own busiest unit)."""
    def busy(res: ModelResult) -> dict:
        out: dict = {}
        for t in res.times:
            unit = KINDS[t.stage.kind]
            out[unit] = out.get(unit, 0.0) + t.compute_cycles
        return out
    bw = batched.dram["bytes_per_cycle"]
    steady = max(max(busy(batched).values()), batched.dram_bytes / bw)
    return steady + single.cycles - max(busy(single).values())
