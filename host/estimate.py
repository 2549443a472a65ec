"""Run-time estimates for wait timeouts.

No cycle model of the whole accelerator exists yet (issue 11).  Until one does, a run's
expected time is the backbone's multiply-accumulates divided by a deliberately low nominal rate
per backend (:data:`NOMINAL_MACS_PER_S`); timeouts are a multiple of that, with a floor.  These
rates size timeouts only and are not performance claims.
"""

from __future__ import annotations

from moevit.config import AcceleratorConfig

#: conservative MAC/s per backend, for timeouts only.  golden: ~0.2 s per edge-moe image on
#: one core measured (bench/), taken 10x slower for a loaded machine; pynq: Edge-MoE measured
#: 34.6 ms per image on the ZCU102, taken ~10x slower.
NOMINAL_MACS_PER_S = {"golden": 4e8, "pynq": 2e9, "rtl": 2e9, "replay": 2e9}
#: timeout = max(floor, factor x estimate)
TIMEOUT_FACTOR = 20.0
#: (rtl: simulated seconds, which its waits count in kernel cycles -- 1 ms is 300 k cycles at
#: 300 MHz -- so a hung simulation gives up after minutes of wall time, not days)
TIMEOUT_FLOOR_S = {"golden": 120.0, "pynq": 5.0, "rtl": 1e-3, "replay": 5.0}


def backbone_macs(cfg: AcceleratorConfig) -> int:
    """Multiply-accumulates of one image through the encoder (patch embedding, Q/K/V/proj,
    the two attention products, the dense MLPs or gate + top-k experts).  Equal to
    ``moevit.golden.float.model.macs(...)["backbone"]`` (tested), without importing torch,
    which the board environment lacks."""
    T, D = cfg.tokens, cfg.dim
    macs = cfg.num_patches * D * cfg.image_channels * cfg.patch_size ** 2
    for layer in range(cfg.depth):
        macs += T * D * 3 * D + 2 * T * T * D + T * D * D
        if cfg.is_moe(layer):
            macs += T * D * cfg.num_experts + cfg.top_k * T * 2 * D * cfg.expert_hidden
        else:
            macs += T * 2 * D * cfg.mlp_hidden
    return macs


def estimate_seconds(cfg: AcceleratorConfig, backend: str, num_images: int) -> float:
    """Expected run time of ``num_images`` images on ``backend`` (nominal, see module doc)."""
    rate = NOMINAL_MACS_PER_S.get(backend, min(NOMINAL_MACS_PER_S.values()))
    return backbone_macs(cfg) * max(num_images, 1) / rate


def default_timeout(cfg: AcceleratorConfig, backend: str, num_images: int) -> float:
    floor = TIMEOUT_FLOOR_S.get(backend, max(TIMEOUT_FLOOR_S.values()))
    return max(floor, TIMEOUT_FACTOR * estimate_seconds(cfg, backend, num_images))
