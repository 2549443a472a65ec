"""Shared helpers of the arithmetic units: the fm_t shape from the config, stream ports, and
:class:`FmPipelineUnit`, the skeleton of the fm_t -> fm_t pipelined units."""

from __future__ import annotations

from amaranth import Module, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from moevit.config import AcceleratorConfig
from moevit.errors import ConfigError


def fm_shape(cfg: AcceleratorConfig):
    """Amaranth shape of fm_t (signed, cfg.formats.fm.width bits)."""
    return signed(cfg.formats.fm.width)


def require_fm(cfg: AcceleratorConfig, unit: str, width: int = 32, frac: int = 22, owner=None):
    """Units whose algorithm is defined for one format only (e.g. hls::exp for
    ap_fixed<32,10>) check it here and say what is supported."""
    fm = cfg.formats.fm
    if (fm.width, fm.frac) != (width, frac):
        silence(owner)
        raise ConfigError(f"config {cfg.name!r}: the {unit} unit implements fm_t = "
                          f"ap_fixed<{width},{width - frac}> only (spec Appendix B / §3.3); "
                          f"got {fm}")


def stream_signature(in_shape, out_shape) -> dict:
    """Component signature members ``i`` (stream in) and ``o`` (stream out)."""
    return {"i": In(stream.Signature(in_shape)), "o": Out(stream.Signature(out_shape))}


class FmPipelineUnit(wiring.Component):
    """A pipelined unit with an fm_t result: the input payload is registered (stage 1), the
    subclass's :meth:`stages` appends its datapath to the :class:`StallPipeline`, and its
    result is registered as the fm_t output ``y``.  Subclasses define ``latency`` (asserted
    against the built pipeline) and may change ``in_name`` (the input register's name),
    the input shape (``in_shape`` argument) or :meth:`register_input`."""

    in_name = "x"

    def __init__(self, cfg: AcceleratorConfig, in_shape=None):
        self.cfg = cfg
        self.width = cfg.formats.fm.width
        self.frac = cfg.formats.fm.frac
        fm = fm_shape(cfg)
        super().__init__(stream_signature(fm if in_shape is None else in_shape, fm))

    def register_input(self, pipe):
        """Stage-0 input -> stage-1 registered value(s) handed to :meth:`stages`."""
        return pipe.reg(self.i.payload, self.in_name)

    def stages(self, pipe, x):
        """Append the datapath for the stage-1 ``x``; return the combinational result."""
        raise NotImplementedError

    def elaborate(self, platform):
        from moevit.hw.units.pipeline import StallPipeline
        m = Module()
        pipe = StallPipeline(m, self.i, self.o)
        x = self.register_input(pipe)
        pipe.next()
        y = pipe.reg(self.stages(pipe, x), "y", shape=fm_shape(self.cfg))
        pipe.next()
        pipe.finish(y)
        assert pipe.latency == self.latency, (pipe.latency, self.latency)
        return m


__all__ = ["FmPipelineUnit", "fm_shape", "require_fm", "stream_signature", "wiring"]


def silence(component) -> None:
    """Mark a component that is being abandoned (construction error) as used, so Amaranth
    does not warn that it was never elaborated."""
    if component is not None:
        component._MustUse__silence = True
