"""moevit.hw.cxx: header discovery, cached compilation, clear errors."""
import subprocess

import pytest

from moevit.errors import ToolNotFoundError
from moevit.hw import cxx

SRC = r"""
#include <cstdio>
#include <ap_fixed.h>
int main() {
    ap_fixed<16, 2> a = -0.3;          // floor: -0.300048828125
    ap_fixed<16, 2> b = 2.5;           // wraps to -1.5
    std::printf("%.12f %.12f %d\n", a.to_double(), b.to_double(), SCALE);
    return 0;
}
"""


def test_ap_types_found():
    inc = cxx.ap_types_include()
    assert (inc / "ap_fixed.h").is_file() and (inc / "ap_int.h").is_file()


@pytest.mark.hls
def test_compile_run_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MOEVIT_BUILD", str(tmp_path / "build"))
    src = tmp_path / "t.cpp"
    src.write_text(SRC)
    exe = cxx.compile_cxx("t", [src], defines={"SCALE": 7})
    out = subprocess.run([exe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["-0.300048828125", "-1.500000000000", "7"]
    assert exe.parent.parent == tmp_path / "build" / "cxx"
    mtime = exe.stat().st_mtime_ns
    assert cxx.compile_cxx("t", [src], defines={"SCALE": 7}) == exe      # cached
    assert exe.stat().st_mtime_ns == mtime
    assert cxx.compile_cxx("t", [src], defines={"SCALE": 8}) != exe      # flags change the key


@pytest.mark.hls
def test_cache_key_covers_depends(tmp_path, monkeypatch):
    monkeypatch.setenv("MOEVIT_BUILD", str(tmp_path / "build"))
    src, hdr = tmp_path / "t.cpp", tmp_path / "scale.h"
    src.write_text('#include "scale.h"\n' + SRC)
    hdr.write_text("#define SCALE 3\n")
    exe = cxx.compile_cxx("t", [src], include_dirs=[tmp_path], depends=[hdr])
    assert subprocess.run([exe], capture_output=True, text=True,
                          check=True).stdout.split()[-1] == "3"
    hdr.write_text("#define SCALE 4\n")                               # header edit: rebuilt
    exe2 = cxx.compile_cxx("t", [src], include_dirs=[tmp_path], depends=[hdr])
    assert exe2 != exe
    assert subprocess.run([exe2], capture_output=True, text=True,
                          check=True).stdout.split()[-1] == "4"
    with pytest.raises(FileNotFoundError, match="dependency .*nope.h"):
        cxx.compile_cxx("t", [src], include_dirs=[tmp_path], depends=[tmp_path / "nope.h"])


@pytest.mark.hls
def test_compile_error_names_compiler_output(tmp_path, monkeypatch):
    monkeypatch.setenv("MOEVIT_BUILD", str(tmp_path / "build"))
    src = tmp_path / "bad.cpp"
    src.write_text("int main() { return undefined_symbol; }\n")
    with pytest.raises(cxx.CompileError, match="undefined_symbol"):
        cxx.compile_cxx("bad", [src])


def test_missing_gxx_raises_tool_not_found(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    with pytest.raises(ToolNotFoundError, match="no-such-compiler-xyz.*apt-get install g\\+\\+"):
        cxx.compile_cxx("x", [tmp_path / "x.cpp"])


def test_missing_hls4ml_raises_tool_not_found(monkeypatch):
    monkeypatch.setattr(cxx.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ToolNotFoundError, match="hls4ml.*pip install hls4ml"):
        cxx.ap_types_include()
