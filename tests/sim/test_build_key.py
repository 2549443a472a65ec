"""Simulator builds are keyed by the sources' content, not only their names (HLS-exported
Verilog keeps its file names across re-exports)."""

from moevit.sim.runner import sources_key


def test_key_follows_content_not_just_names(tmp_path):
    a = tmp_path / "moevit_attention.v"
    b = tmp_path / "helper.v"
    a.write_text("module moevit_attention; endmodule\n")
    b.write_text("module helper; endmodule\n")
    k1 = sources_key([a, b], "verilator", "False", "moevit_attention")
    assert k1 == sources_key([a, b], "verilator", "False", "moevit_attention")  # stable
    a.write_text("module moevit_attention; wire x; endmodule\n")  # re-exported, same name
    k2 = sources_key([a, b], "verilator", "False", "moevit_attention")
    assert k2 != k1
    assert sources_key([a, b], "icarus", "False", "moevit_attention") != k2
    assert sources_key([a, b], "verilator", "True", "moevit_attention") != k2
    # the same content under another name is another source list
    c = tmp_path / "other.v"
    c.write_text(a.read_text())
    assert sources_key([c, b], "verilator", "False", "moevit_attention") != k2
    assert len(k1) == 12 and int(k1, 16) >= 0
