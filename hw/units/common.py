"""Shared helpers of the arithmetic units: the fm_t shape from the config, stream ports."""

from __future__ import annotations

from amaranth import signed
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


__all__ = ["fm_shape", "require_fm", "stream_signature", "wiring"]


def silence(component) -> None:
    """Mark a component that is being abandoned (construction error) as used, so Amaranth
    does not warn that it was never elaborated."""
    if component is not None:
        component._MustUse__silence = True
