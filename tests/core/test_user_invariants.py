"""Invariants a user can violate raise moevit exceptions with exact messages (not assert,
not a bare ValueError/TypeError from deep inside)."""

import numpy as np
import pytest

from moevit.config import FixedFormat, Formats, preset
from moevit.errors import ConfigError
from moevit.golden.model import GoldenModel
from moevit.golden.weight_io import load_folder
from moevit.golden.weights import seeded_weights


def test_attention_refuses_another_fm_format():
    from moevit.hw.units.attention import Attention, AttentionAV, AttentionQK, FM_W
    cfg = preset("tiny")
    assert FM_W == cfg.formats.fm.width  # the unit's width is the config's format
    odd = cfg.replace(formats=Formats(fm=FixedFormat(24, 8)), axi_width=192, layernorm_eps=1e-4)
    for unit in (Attention, AttentionQK, AttentionAV):
        with pytest.raises(ConfigError, match=r"^config 'tiny': the attention unit implements "
                                              r"fm_t = ap_fixed<32,10> only \(spec Appendix B / "
                                              r"§3\.3\); got ap_fixed<24,8>$"):
            unit(odd)


def test_unknown_tap_names():
    cfg = preset("tiny")
    with pytest.raises(ConfigError, match=r"^unknown tap names \['l0\.nope'\]; see "
                                          r"moevit\.golden\.model\.tap_names\(cfg\)$"):
        GoldenModel(cfg, seeded_weights(cfg, 0)).run(
            np.zeros((3, cfg.image_height, cfg.image_width)), taps={"l0.nope"})


def test_on_wrap_value(tmp_path):
    with pytest.raises(ConfigError, match=r"^on_wrap must be 'raise' or 'wrap', not 'clip'$"):
        load_folder(tmp_path, preset("tiny"), on_wrap="clip")
