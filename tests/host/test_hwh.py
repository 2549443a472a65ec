"""Parsing hand-made .hwh files in Vivado's format, and the driver's map check."""
from pathlib import Path

import pytest

from moevit.host.errors import HwhError, RegisterMapMismatch
from moevit.host.hwh import check_map, parse_hwh, require_map
from moevit.regmap import REGMAP

FIX = Path(__file__).parent / "fixtures"
EDGE = FIX / "edge_moe_vit_compute.hwh"
OURS = FIX / "moevit_zcu104.hwh"


def test_edge_moe_hwh_parsed():
    m = parse_hwh(EDGE)
    assert m.name == "ViT_compute_0"
    assert m.base_address == 0xA0000000 and m.address_range == 0x10000
    assert m.extra["clock_hz"] == 299970032 and m.extra["address_width"] == 9
    assert m.extra["vlnv"] == "xilinx.com:hls:ViT_compute:1.0"
    assert m["images"].width == 64 and m["images"].offset == 0x20      # images_1/_2 folded
    assert m["debug_id"].offset == 0x14C and m["num_images"].offset == 0x10
    ctrl = {f.name: (f.bit, f.width) for f in m["CTRL"].fields}
    assert ctrl["AP_DONE"] == (1, 1) and ctrl["AUTO_RESTART"] == (7, 1)
    res = check_map(m)
    assert res.ok and not res.extensions       # Edge-MoE's own bitstream: no extensions


def test_moevit_hwh_has_extensions():
    res = require_map(parse_hwh(OURS))
    assert res.extensions
    assert parse_hwh(OURS).words()["cycles_1"] == REGMAP.words()["cycles_1"]


def test_hwh_from_text_and_kernel_name():
    text = EDGE.read_text()
    assert parse_hwh(text, kernel="ViT_compute_0").name == "ViT_compute_0"
    with pytest.raises(HwhError, match="no kernel named 'other'"):
        parse_hwh(text, kernel="other")


def _edited(tmp_path, old, new, count=1):
    text = EDGE.read_text()
    assert old in text
    f = tmp_path / "edited.hwh"
    f.write_text(text.replace(old, new, count))
    return f


def test_moved_register_named(tmp_path):
    # move debug_id from 0x14c (332) to 0x150 (336)
    f = _edited(tmp_path, '<REGISTER NAME="debug_id">\n              <PROPERTY NAME="DESCRIPTION" '
                'VALUE="Data signal of debug_id"/>\n              <PROPERTY NAME="ADDRESS_OFFSET" '
                'VALUE="332"/>', '<REGISTER NAME="debug_id">\n              <PROPERTY NAME='
                '"DESCRIPTION" VALUE="Data signal of debug_id"/>\n              <PROPERTY NAME='
                '"ADDRESS_OFFSET" VALUE="336"/>')
    with pytest.raises(RegisterMapMismatch, match=r"moved: debug_id: expected 0x14c, found 0x150"):
        require_map(parse_hwh(f))


def test_missing_registers_named(tmp_path):
    f = _edited(tmp_path, 'REGISTER NAME="moe_w_gate_1"', 'REGISTER NAME="gate_1"')
    with pytest.raises(RegisterMapMismatch) as e:
        require_map(parse_hwh(f))
    assert "missing: moe_w_gate_1 (0x0c8)" in str(e.value)


def test_extension_at_wrong_place_refused(tmp_path):
    text = OURS.read_text().replace('<REGISTER NAME="stage">\n              <PROPERTY NAME='
                                    '"DESCRIPTION" VALUE="Data signal of stage"/>\n              '
                                    '<PROPERTY NAME="ADDRESS_OFFSET" VALUE="352"/>',
                                    '<REGISTER NAME="stage">\n              <PROPERTY NAME='
                                    '"DESCRIPTION" VALUE="Data signal of stage"/>\n              '
                                    '<PROPERTY NAME="ADDRESS_OFFSET" VALUE="356"/>')
    with pytest.raises(RegisterMapMismatch, match="stage: expected 0x160, found 0x164"):
        require_map(parse_hwh(text))


def test_ctrl_bit_moved(tmp_path):
    f = _edited(tmp_path, '<FIELD NAME="AP_DONE">', '<FIELD NAME="AP_DONE_X">')
    f2 = tmp_path / "bits.hwh"
    f2.write_text(f.read_text().replace('<FIELD NAME="AP_IDLE">', '<FIELD NAME="AP_DONE">'))
    with pytest.raises(RegisterMapMismatch, match="ap_done: expected bit 1, found bit 2"):
        require_map(parse_hwh(f2))


def test_bad_files(tmp_path):
    with pytest.raises(HwhError, match="does not exist"):
        parse_hwh(tmp_path / "none.hwh")
    bad = tmp_path / "bad.hwh"
    bad.write_text("<EDKSYSTEM><MODULES>")
    with pytest.raises(HwhError, match="not valid XML"):
        parse_hwh(bad)
    empty = tmp_path / "empty.hwh"
    empty.write_text("<EDKSYSTEM><MODULES/></EDKSYSTEM>")
    with pytest.raises(HwhError, match="no kernel"):
        parse_hwh(empty)


def test_base_address_from_parameters_without_memrange(tmp_path):
    text = EDGE.read_text()
    start = text.index('<MEMRANGE ADDRESSBLOCK="Reg"')
    end = text.index("/>", start) + 2
    m = parse_hwh(text[:start] + text[end:])
    assert m.base_address == 0xA0000000 and m.address_range == 0x10000
