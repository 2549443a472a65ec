"""scripts/mutants.py: the mutant list is well-formed and current (every snippet occurs
exactly once in the tree), so a mutant made stale by a code change fails here, in CI, and
not only when someone runs `make mutants`."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mutants():
    spec = importlib.util.spec_from_file_location("moevit_mutants", ROOT / "scripts" / "mutants.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_every_snippet_occurs_exactly_once(mutants):
    stale = [(m.name, why) for m in mutants.MUTANTS for line, why in [mutants.locate(m)]
             if line is None]
    assert not stale, "stale mutants (update scripts/mutants.py): " + "; ".join(
        f"{n}: {w}" for n, w in stale)


def test_mutants_are_distinct_faults_with_existing_tests(mutants):
    ms = mutants.MUTANTS
    assert len(ms) >= 40
    assert len({m.name for m in ms}) == len(ms)
    for m in ms:
        assert m.find != m.replace and m.what, m.name
        files = [t.split("::")[0] for t in m.tests if t.startswith("tests/")]
        assert files and all((ROOT / f).is_file() for f in files), m.name


def test_mutants_cover_every_layer(mutants):
    """Fixed-point core, numba kernels, numpy reference, every RTL unit, the attention unit
    and the HLS C++ each get mutants."""
    files = {m.file for m in mutants.MUTANTS}
    required = {"golden/fixed.py", "golden/exp.py", "golden/kernels.py", "golden/_fast.py",
                "golden/attention.py", "golden/linear.py", "golden/layernorm.py",
                "golden/moe.py", "golden/patch_embed.py", "golden/model.py",
                "hw/units/exp.py", "hw/units/gelu.py", "hw/units/divide.py", "hw/units/sqrt.py",
                "hw/units/softmax.py", "hw/units/pipeline.py", "hw/units/attention.py",
                "hw/hls/attention.cpp", "hw/hls/moevit_exp.h"}
    assert required <= files, f"no mutant in {sorted(required - files)}"


def test_locate_reports_a_stale_snippet(mutants, tmp_path):
    (tmp_path / "a.py").write_text("x = 1\ny = 2\ny = 2\n")
    M = mutants.Mutant
    assert mutants.locate(M("ok", "a.py", "x = 1", "x = 2", (), "w"), tmp_path) == (1, "")
    assert mutants.locate(M("twice", "a.py", "y = 2", "y = 3", (), "w"), tmp_path)[1] == \
        "snippet occurs 2 times in a.py (must be exactly once)"
    assert mutants.locate(M("gone", "a.py", "z = 0", "z = 1", (), "w"), tmp_path)[0] is None
    assert "does not exist" in mutants.locate(M("nofile", "b.py", "x", "y", (), "w"),
                                              tmp_path)[1]
