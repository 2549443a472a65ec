"""The register map against spec §10.3's table, typed in here independently of moevit.regmap."""
import json

import pytest

from moevit.regmap import CTRL_BITS, REGMAP, RegisterMap, Register

# spec §10.3, "Control register map": (word, byte offset), copied from the table
SPEC_10_3 = {
    "CTRL": 0x000, "GIER": 0x004, "IP_IER": 0x008, "IP_ISR": 0x00C, "num_images": 0x010,
    "reload_one_time_weights": 0x018,
    "images_1": 0x020, "images_2": 0x024, "x_1": 0x02C, "x_2": 0x030,
    "tmp1_1": 0x038, "tmp1_2": 0x03C, "tmp2_1": 0x044, "tmp2_2": 0x048,
    "tmp3_1": 0x050, "tmp3_2": 0x054, "tmp4_1": 0x05C, "tmp4_2": 0x060,
    "tmp_hidden_1": 0x068, "tmp_hidden_2": 0x06C, "attn_1": 0x074, "attn_2": 0x078,
    "attn_softmax_info_1": 0x080, "attn_softmax_info_2": 0x084,
    "patch_embed_weights_1": 0x08C, "patch_embed_weights_2": 0x090,
    "patch_embed_bias_1": 0x098, "patch_embed_bias_2": 0x09C,
    "pos_embed_1": 0x0A4, "pos_embed_2": 0x0A8, "attn_weights_1": 0x0B0, "attn_weights_2": 0x0B4,
    "attn_bias_1": 0x0BC, "attn_bias_2": 0x0C0, "moe_w_gate_1": 0x0C8, "moe_w_gate_2": 0x0CC,
    "moe_weights_l1_1": 0x0D4, "moe_weights_l1_2": 0x0D8, "moe_bias_l1_1": 0x0E0,
    "moe_bias_l1_2": 0x0E4, "moe_weights_l2_1": 0x0EC, "moe_weights_l2_2": 0x0F0,
    "moe_bias_l2_1": 0x0F8, "moe_bias_l2_2": 0x0FC, "vit_weights_l1_1": 0x104,
    "vit_weights_l1_2": 0x108, "vit_bias_l1_1": 0x110, "vit_bias_l1_2": 0x114,
    "vit_weights_l2_1": 0x11C, "vit_weights_l2_2": 0x120, "vit_bias_l2_1": 0x128,
    "vit_bias_l2_2": 0x12C, "norm_weights_1": 0x134, "norm_weights_2": 0x138,
    "norm_bias_1": 0x140, "norm_bias_2": 0x144, "debug_id": 0x14C,
}
# spec §10.3: CTRL b0 ap_start, b1 ap_done, b2 ap_idle, b3 ap_ready, b4 ap_continue, b7 auto_restart
SPEC_CTRL_BITS = {"ap_start": 0, "ap_done": 1, "ap_idle": 2, "ap_ready": 3, "ap_continue": 4,
                  "auto_restart": 7}


def test_every_spec_offset():
    words = REGMAP.edge_moe_only().words()
    assert words == SPEC_10_3


def test_ctrl_bits():
    assert CTRL_BITS == {n: 1 << b for n, b in SPEC_CTRL_BITS.items()}
    assert REGMAP["reload_one_time_weights"].fields[0].bit == 0


def test_extensions_follow_the_last_edge_moe_register():
    ext = [r for r in REGMAP.registers if r.extension]
    assert {r.name for r in ext} == {"cycles", "stage", "mode"}
    assert min(r.offset for r in ext) > SPEC_10_3["debug_id"]
    # all inside the 9-bit s_axilite address space of §10.3 and word aligned
    assert all(off < 1 << 9 and off % 4 == 0 for off in REGMAP.words().values())
    assert REGMAP["cycles"].width == 64 and REGMAP["cycles"].access == "read-only"
    assert REGMAP["mode"].field("batched").bit == 0


def test_base_address_and_range():
    assert REGMAP.base_address == 0xA0000000 and REGMAP.address_range == 64 * 1024


def test_generated_c_header_json_markdown_agree(tmp_path):
    h = REGMAP.c_header()
    for w, off in REGMAP.words().items():
        assert f"#define MOEVIT_CTRL_ADDR_{w.upper()} 0x{off:03X}u" in h
    assert "#define MOEVIT_CTRL_CTRL_AP_DONE_MASK 0x2u" in h
    d = json.loads(REGMAP.to_json())
    assert {w: o for r in d["registers"] for w, o in r["words"].items()} == REGMAP.words()
    md = REGMAP.markdown()
    assert "| 0x14c | debug_id |" in md and "| 0x020/0x024 | images |" in md
    assert md.count("moevit extension") == 3


def test_header_compiles_with_gcc(tmp_path):
    import shutil
    import subprocess
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    (tmp_path / "regmap.h").write_text(REGMAP.c_header())
    (tmp_path / "t.c").write_text('#include "regmap.h"\n_Static_assert(MOEVIT_CTRL_ADDR_DEBUG_ID '
                                  '== 0x14C, "");\nint main(void){return 0;}\n')
    subprocess.run([cc, "-std=c11", "-c", str(tmp_path / "t.c"), "-o", str(tmp_path / "t.o")],
                   check=True)


def test_overlapping_registers_refused():
    with pytest.raises(ValueError, match="both at 0x010"):
        RegisterMap((Register("a", 0x10), Register("b", 0x10)))


def test_docs_table_is_current():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "host.md").read_text()
    table = doc.split("<!-- regmap-table -->\n")[1].split("<!-- /regmap-table -->")[0]
    assert table.strip() == REGMAP.markdown().strip(), \
        "docs/host.md's register table is stale: paste `moevit regmap --format markdown`"
