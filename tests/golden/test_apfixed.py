"""Cross-check of the Python fixed-point core against the real Xilinx ap_fixed headers.

tests/cxx/apfixed_harness.cpp is compiled with g++ against hls4ml's ap_types; every op below
runs >= 100k random cases (uniform, small, boundary, power-of-two, wrapping, negative) in one
harness invocation, and golden/fixed.py must agree bit for bit (spec §3.2 rules 1-8).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from moevit.config import FixedFormat, Formats
from moevit.errors import ToolNotFoundError
from moevit.golden import fixed as fx

pytestmark = pytest.mark.hls

N = 120_000  # cases per op
HARNESS = Path(__file__).resolve().parents[1] / "cxx" / "apfixed_harness.cpp"
F = Formats()
FM = F.fm
U8 = FixedFormat(8, 8, signed=False)  # ap_uint<8>

# format used for the operand columns of each harness type name
QFMT = {"fm": F.fm, "lin": F.wt_linear, "abias": F.wt_attn_bias, "bias": F.wt_bias,
        "patch": F.wt_patch_embed, "pixel": F.pixel, "wbias": F.wt_wbias, "frac": F.fm_frac}


@pytest.fixture(scope="module")
def harness():
    from moevit.hw.cxx import compile_cxx
    try:
        return compile_cxx("apfixed_harness", [HARNESS])
    except ToolNotFoundError as e:
        pytest.skip(str(e))


def run(harness, op: str, operands: np.ndarray, tmp_path: Path) -> np.ndarray:
    inp, out = tmp_path / f"{op}.in", tmp_path / f"{op}.out"
    np.ascontiguousarray(operands).tofile(inp)
    subprocess.run([harness, op, inp, out], check=True, capture_output=True)
    return np.fromfile(out, dtype=np.int64)


# ----------------------------------------------------------------------------- case generators
def raw_cases(fmt: FixedFormat, n: int, rng: np.random.Generator) -> np.ndarray:
    """Raw operands of ``fmt``: uniform, small, near the ends, +-2^k +-1, mid-size."""
    lo, hi = fmt.raw_min, fmt.raw_max
    parts = [
        rng.integers(lo, hi, size=n * 4 // 10, endpoint=True),
        np.clip(rng.integers(-64, 64, size=n * 2 // 10, endpoint=True), lo, hi),
        np.concatenate([lo + rng.integers(0, 256, n * 75 // 1000), hi - rng.integers(0, 256, n * 75 // 1000)]),
    ]
    k = rng.integers(0, fmt.width, size=n * 15 // 100)
    p2 = (np.int64(1) << k) * rng.choice([-1, 1], size=k.size) + rng.integers(-1, 2, size=k.size)
    parts.append(np.clip(p2, lo, hi))
    half = max(fmt.width // 2, 2)
    rest = n - sum(len(p) for p in parts)
    parts.append(np.clip(rng.integers(-(1 << half), 1 << half, size=rest), lo, hi))
    v = np.concatenate(parts).astype(np.int64)
    rng.shuffle(v)
    return v


def double_cases(fmt: FixedFormat, n: int, rng: np.random.Generator) -> np.ndarray:
    """Doubles for float -> fmt: in range, wrapping, grid points, grid +- 1 ulp of double,
    float32 values, boundaries, and a few huge magnitudes."""
    lo, hi, ulp = fmt.min, fmt.max + fmt.ulp, fmt.ulp
    span = hi - lo
    m = n // 10
    grid = rng.integers(fmt.raw_min * 4, fmt.raw_max * 4, size=m) * ulp
    parts = [
        rng.uniform(lo, hi, 2 * m),                                   # in range
        rng.uniform(lo - 4 * span, hi + 4 * span, 2 * m),             # wraps both sides
        grid,                                                         # exact grid points
        np.nextafter(grid, np.inf), np.nextafter(grid, -np.inf),      # just off the grid
        rng.uniform(lo * 2, hi * 2, m).astype(np.float32).astype(np.float64),  # float32 inputs
    ]
    specials = np.array([0.0, -0.0, lo, hi - ulp, hi, lo - ulp, ulp, -ulp, ulp / 2, -ulp / 2,
                         1.0, -1.0, 0.5, -0.5, hi - ulp / 2, lo + ulp / 2, -0.3, 0.3, 2.5, -2.5])
    rest = n - sum(len(p) for p in parts)
    parts.append(np.concatenate([specials, rng.uniform(-2.0 ** 40, 2.0 ** 40, rest - specials.size)]))
    v = np.concatenate(parts)
    rng.shuffle(v)
    return v


def test_harness_op_table_is_covered(harness):
    listed = subprocess.run([harness, "--list"], capture_output=True, text=True, check=True).stdout
    names = {line.split()[0] for line in listed.splitlines()}
    assert names == set(Q_OPS) | set(CV_OPS) | set(BIN_OPS) | set(ACC_OPS) | {"recip_fm"}


# ----------------------------------------------------------------------------- rule 1: double -> fixed
Q_OPS = {f"q_{k}": fmt for k, fmt in QFMT.items()}


@pytest.mark.parametrize("op", sorted(Q_OPS))
def test_double_to_fixed(harness, op, tmp_path):
    fmt = Q_OPS[op]
    x = double_cases(fmt, N, np.random.default_rng(sum(map(ord, op)) * 31))
    got = run(harness, op, x, tmp_path)
    want, report = fx.quantize(x, fmt)
    assert report.wrapped > N // 10, "the cases must exercise wrapping"
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"{op}: {bad.size} mismatches, e.g. x={x[bad[0]]!r} C++ {got[bad[0]]} py {want[bad[0]]}"


# ----------------------------------------------------------------------------- rules 5, 8: narrowing
CV_OPS = {f"cv_{k}": fmt for k, fmt in QFMT.items() if k != "fm"} | {"cv_u8": U8, "cv_i12": None}


@pytest.mark.parametrize("op", sorted(CV_OPS))
def test_fm_to_narrower(harness, op, tmp_path):
    a = raw_cases(FM, N, np.random.default_rng(len(op) * 7919 + sum(map(ord, op))))
    got = run(harness, op, a, tmp_path)
    if op == "cv_u8":
        want = fx.to_ap_int(a, FM, 8, signed=False)
        # ap_uint<8> truncates toward zero, unlike a fixed-point target (floor): the cases must
        # contain negative non-integers where the two differ
        assert np.count_nonzero(want != fx.convert(a, FM, U8)) > N // 10
    elif op == "cv_i12":
        want = fx.to_ap_int(a, FM, 12, signed=True)
    else:
        want = fx.convert(a, FM, CV_OPS[op])
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"{op}: {bad.size} mismatches, e.g. a={a[bad[0]]} C++ {got[bad[0]]} py {want[bad[0]]}"


# ----------------------------------------------------------------------------- rules 2-4: binary ops
def _fixed_to_fm(p, frac):
    """Exact value with ``frac`` fractional bits -> fm_t by the conversion rule."""
    return fx.convert(p, FixedFormat(64, 64 - frac), FM)


BIN_OPS = {
    # name: (format a, format b, python expected(a, b))
    "mulx_fm_fm": (F.fm, F.fm, lambda a, b: a * b),
    "mulx_fm_lin": (F.fm, F.wt_linear, lambda a, b: a * b),
    "mulx_pix_patch": (F.pixel, F.wt_patch_embed, lambda a, b: a * b),
    "mul_fm_fm": (F.fm, F.fm, lambda a, b: fx.mul_fm(a, b)),
    "mul_fm_lin": (F.fm, F.wt_linear, lambda a, b: fx.mul_fm(a, b, F.wt_linear.frac)),
    "mul_fm_norm": (F.fm, F.wt_norm, lambda a, b: fx.mul_fm(a, b, F.wt_norm.frac)),
    "mul_pix_patch": (F.pixel, F.wt_patch_embed,
                      lambda a, b: _fixed_to_fm(a * b, F.pixel.frac + F.wt_patch_embed.frac)),
    "addx_fm_fm": (F.fm, F.fm, lambda a, b: a + b),
    "subx_fm_fm": (F.fm, F.fm, lambda a, b: a - b),
    "add_fm_fm": (F.fm, F.fm, lambda a, b: fx.wrap32(a + b)),
    "sub_fm_fm": (F.fm, F.fm, lambda a, b: fx.wrap32(a - b)),
    "add_fm_bias": (F.fm, F.wt_bias, lambda a, b: fx.wrap32(a + fx.convert(b, F.wt_bias, F.fm))),
    "add_fm_wbias": (F.fm, F.wt_wbias, lambda a, b: fx.wrap32(a + fx.convert(b, F.wt_wbias, F.fm))),
    "div_fm": (F.fm, F.fm, lambda a, b: fx.div_fm(a, b)),
}


@pytest.mark.parametrize("op", sorted(BIN_OPS))
def test_binary_op(harness, op, tmp_path):
    fa, fb, expect = BIN_OPS[op]
    rng = np.random.default_rng(sum(map(ord, op)) * 104729)
    a, b = raw_cases(fa, N, rng), raw_cases(fb, N, rng)
    if op == "div_fm":
        b = np.where(b == 0, rng.choice([-1, 1, 2, -7], size=N), b)  # x/0 is undefined in C++
    got = run(harness, op, np.stack([a, b], axis=1), tmp_path)
    want = expect(a, b)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (f"{op}: {bad.size}/{N} mismatches, e.g. a={a[bad[0]]} b={b[bad[0]]} "
                           f"C++ {got[bad[0]]} py {want[bad[0]]}")
    if op.startswith(("add_", "sub_", "mul_fm", "div")):
        # make sure the cases exercise the wrap: the unwrapped result leaves int32 often
        unwrapped = {"add_fm_fm": a + b, "sub_fm_fm": a - b}.get(op)
        if unwrapped is not None:
            assert np.count_nonzero(unwrapped != got) > N // 100
    if op in ("mul_fm_fm", "div_fm"):
        assert np.count_nonzero(got < 0) > N // 10  # negative results are well covered


# ----------------------------------------------------------------------------- rule 5: compound
def _acc_expect(op, acc, b, c):
    if op == "iadd_mul_lin":
        return fx.wrap32(acc + fx.mul_fm(b, c, F.wt_linear.frac))
    if op == "iadd_mul_fm":
        return fx.wrap32(acc + fx.mul_fm(b, c))
    if op == "isub_mul_fm":
        # exact acc - b*c, then floor: floor(acc - p) = acc - ceil(p), NOT acc - floor(p)
        return fx.wrap32(fx.floor_shift((acc << 22) - b * c, 22))
    if op == "imul_fm":
        return fx.mul_fm(acc, b)
    if op == "imul_lin":
        return fx.mul_fm(acc, b, F.wt_linear.frac)
    if op == "iadd_fm":
        return fx.wrap32(acc + b)
    if op == "isub_fm":
        return fx.wrap32(acc - b)
    if op == "iadd_bias":
        return fx.wrap32(acc + fx.convert(b, F.wt_bias, F.fm))
    raise KeyError(op)


ACC_OPS = {"iadd_mul_lin": (F.fm, F.wt_linear), "iadd_mul_fm": (F.fm, F.fm),
           "isub_mul_fm": (F.fm, F.fm), "imul_fm": (F.fm, F.fm), "imul_lin": (F.wt_linear, F.fm),
           "iadd_fm": (F.fm, F.fm), "isub_fm": (F.fm, F.fm), "iadd_bias": (F.wt_bias, F.fm)}


@pytest.mark.parametrize("op", sorted(ACC_OPS))
def test_compound_assignment(harness, op, tmp_path):
    fb, fc = ACC_OPS[op]
    rng = np.random.default_rng(sum(map(ord, op)) * 7)
    acc, b, c = raw_cases(FM, N, rng), raw_cases(fb, N, rng), raw_cases(fc, N, rng)
    got = run(harness, op, np.stack([acc, b, c], axis=1), tmp_path)
    want = _acc_expect(op, acc, b, c)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (f"{op}: {bad.size}/{N} mismatches, e.g. acc={acc[bad[0]]} b={b[bad[0]]} "
                           f"c={c[bad[0]]} C++ {got[bad[0]]} py {want[bad[0]]}")


def test_isub_product_is_not_acc_minus_floored_product(harness, tmp_path):
    """acc -= b*c floors the exact difference: differs from acc - floor(b*c) when b*c is off-grid."""
    acc, b, c = np.array([0, 5]), np.array([1, 3]), np.array([1, 1 << 21])  # p = 2^-22 ULP-fractions
    got = run(harness, "isub_mul_fm", np.stack([acc, b, c], axis=1), tmp_path)
    assert list(got) == [-1, 5 - 2]          # floor(-2^-44) = -1 ULP; floor(5 - 1.5) = 3
    assert list(fx.wrap32(acc - fx.mul_fm(b, c))) == [0, 4]


# ----------------------------------------------------------------------------- recip (spec §3.3)
def test_recip_is_fm_one_over_x(harness, tmp_path):
    rng = np.random.default_rng(3)
    x = raw_cases(FM, N, rng)
    x = np.concatenate([np.arange(-5000, 5001), x])
    x = x[x != 0]
    got = run(harness, "recip_fm", x, tmp_path)
    want = fx.recip(x)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"recip: {bad.size} mismatches, e.g. x={x[bad[0]]} C++ {got[bad[0]]} py {want[bad[0]]}"
    # the rule is trunc0(2^44/X): on positives it is the floor, negatives round toward zero
    pos = x > 0
    assert np.array_equal(got[pos & (x > 1 << 13)], (1 << 44) // x[pos & (x > 1 << 13)])
    neg = (x < -(1 << 13))
    assert np.array_equal(got[neg], -((1 << 44) // -x[neg]))
    assert np.count_nonzero(got[neg] != (1 << 44) // x[neg]) > 0.9 * neg.sum()


# ----------------------------------------------------------------------------- GELU in ap types
GELU_HARNESS = HARNESS.parent / "gelu_harness.cpp"


def test_gelu_matches_ap_fixed_rendering(tmp_path):
    """kernels.gelu (integer formula of §4.4) == the same steps written with ap_fixed types."""
    from moevit.golden.kernels import gelu, gelu_table
    from moevit.hw.cxx import compile_cxx
    try:
        exe = compile_cxx("gelu_harness", [GELU_HARNESS])
    except ToolNotFoundError as e:
        pytest.skip(str(e))
    rng = np.random.default_rng(11)
    x = np.concatenate([raw_cases(FM, N, rng), rng.integers(-6 << 22, 6 << 22, N),
                        np.arange(-(1 << 18), 1 << 18, 3), [-(1 << 31), (1 << 31) - 1]]).astype(np.int64)
    gelu_table().astype(np.int64).tofile(tmp_path / "table.bin")
    x.tofile(tmp_path / "in.bin")
    subprocess.run([exe, tmp_path / "table.bin", tmp_path / "in.bin", tmp_path / "out.bin"],
                   check=True, capture_output=True)
    got = np.fromfile(tmp_path / "out.bin", dtype=np.int64)
    want = gelu(x)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"gelu: {bad.size}/{x.size} mismatches, e.g. x={x[bad[0]]} C++ {got[bad[0]]} py {want[bad[0]]}"
