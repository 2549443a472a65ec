"""``Delay``: an n-stage identity pipeline (harness self-test and latency padding)."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring

from moevit.config import AcceleratorConfig
from moevit.hw.units.common import fm_shape, stream_signature
from moevit.hw.units.pipeline import StallPipeline


class Delay(wiring.Component):
    """fm_t in, the same fm_t out ``stages`` cycles later; valid/ready, 1 item/cycle."""

    def __init__(self, cfg: AcceleratorConfig, stages: int = 3):
        self.cfg = cfg
        self.stages = stages
        super().__init__(stream_signature(fm_shape(cfg), fm_shape(cfg)))

    @property
    def latency(self) -> int:
        return self.stages

    def elaborate(self, platform):
        m = Module()
        pipe = StallPipeline(m, self.i, self.o)
        pipe.carry("x", self.i.payload)
        for _ in range(self.stages):
            pipe.next()
        pipe.finish(pipe["x"])
        return m
