#!/usr/bin/env python3
"""Mutation check: does the fast test suite see small, targeted faults?

Each mutant is (file, an exact source snippet that must occur exactly once, its
replacement, the tests to run).  For every mutant, one at a time, the snippet is replaced in
a scratch copy of the tree (``build/mutants/tree``) and the mutant's tests run there with
``pytest -x -m "not slow"``.  A mutant is *killed* when a test fails; a surviving mutant is a
missing test.  A snippet that no longer occurs exactly once is reported as STALE (the code
moved on; update the mutant).  The exit status is 0 only if every mutant was killed.

The scratch copy is imported through a package root ``build/mutants/pkgroot/moevit`` (a
copy of ``moevit/`` with ``golden``, ``hw``, ``sim``, ``host`` linked in as subpackages) put
first on ``PYTHONPATH``, with ``python -P`` so that the current folder does not shadow it;
a canary checks that every subpackage really comes from the copy before any mutant runs.
Simulator and C++ builds are cached by content (``MOEVIT_BUILD=build/mutants/cache``), so a
mutated unit rebuilds and an unmutated one does not.

    python scripts/mutants.py                 # all mutants, table to bench/mutants.md
    python scripts/mutants.py --check         # only: does every snippet still match?
    python scripts/mutants.py -k exp_         # mutants whose name contains "exp_"
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUBPACKAGES = ("golden", "hw", "sim", "host")


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str           # path relative to the repository root
    find: str           # exact snippet, must occur exactly once in the file
    replace: str
    tests: tuple        # pytest arguments (files, node ids, -k expressions)
    what: str           # the fault, in words


# ---------------------------------------------------------------------------- test selections
GOLDEN = ("tests/golden/test_fixed.py", "tests/golden/test_spec_rules.py",
          "tests/golden/test_model_units.py", "tests/golden/test_model_moe.py",
          "tests/golden/test_attention.py", "tests/golden/test_exp_softmax.py",
          "tests/golden/test_gelu.py", "tests/golden/test_fast_scalars.py",
          "tests/golden/test_model.py", "tests/golden/test_model_fast.py")


def golden(*first: str) -> tuple:
    """The golden-model selection with the files most likely to fail first (``-x``)."""
    return tuple(f"tests/golden/{f}" for f in first) + tuple(
        t for t in GOLDEN if t.split("/")[-1] not in first)


EXP = golden("test_exp.py")
FAST = ("tests/golden/test_fast_scalars.py", "tests/golden/test_model_fast.py",
        "tests/golden/test_model.py")


def pysim(unit: str) -> tuple:
    """The Amaranth-simulator test(s) of one stream unit."""
    return ("tests/hw/test_units_pysim.py", "-k", unit)


ATTN_RTL = ("tests/hw/test_attention.py", "-k", "icarus_tiny or schedule or cycle_model")
ATTN_SHARE = ("tests/hw/test_attention.py", "-k", "fed_together")
HLS_EXP = ("tests/hls/test_attention_hls.py", "-k", "cxx_exp_matches")
HLS_ATTN = ("tests/hls/test_attention_hls.py", "-k", "tiny_random or edge_moe_layer")

LINEAR_RTL = ("tests/sim/test_linear_rtl.py", "-k", "test_linear_tiny and icarus")
LAYERNORM = ("tests/hw/test_layernorm.py", "-k", "layernorm")
RESIDUAL = ("tests/hw/test_layernorm.py", "-k", "residual")
MOE_GATE_RTL = ("tests/sim/test_moe_gate_rtl.py", "-k", "tiny and icarus")
REPLAY = ("tests/hw/test_stream_replay.py",)

M = Mutant
MUTANTS: list[Mutant] = [
    # ------------------------------------------------------------ fixed-point core
    M("fixed_trunc_div_floor", "golden/fixed.py",
      "    q = np.abs(a) // np.abs(b)\n    return np.where((a < 0) != (b < 0), -q, q)",
      "    return a // b", GOLDEN, "trunc0 division replaced by floor division"),
    M("fixed_floor_shift_trunc", "golden/fixed.py",
      "    return np.right_shift(np.asarray(v, dtype=np.int64), s)",
      "    v = np.asarray(v, dtype=np.int64)\n    return np.sign(v) * (np.abs(v) >> s)",
      GOLDEN, "floor shift replaced by a shift toward zero"),
    M("fixed_recip_numerator_minus_one", "golden/fixed.py",
      "wrap32(trunc_div(np.int64(1 << (2 * FM_FRAC)), safe))",
      "wrap32(trunc_div(np.int64((1 << (2 * FM_FRAC)) - 1), safe))",
      GOLDEN, "recip numerator 2^44 - 1 (wrong only for power-of-two sums)"),
    M("fixed_sqrt_floor_not_rhu", "golden/fixed.py",
      "(isqrt(pos << np.int64(2 * FM_FRAC - 20)) + 1) >> 1",
      "isqrt(pos << np.int64(2 * FM_FRAC - 20)) >> 1", GOLDEN,
      "hls::sqrt rounds down instead of half up"),
    M("fixed_wrap_signed_half", "golden/fixed.py",
      "low = np.where(low >= half, low - np.int64(1 << width), low)",
      "low = np.where(low > half, low - np.int64(1 << width), low)", GOLDEN,
      "wrap(): the most negative value wraps to +2^(w-1)"),
    M("fixed_mul_fm_shift", "golden/fixed.py",
      "return wrap32(floor_shift(np.asarray(a, np.int64) * np.asarray(b, np.int64), frac_b))",
      "return wrap32(floor_shift(np.asarray(a, np.int64) * np.asarray(b, np.int64), frac_b - 1))",
      GOLDEN, "fm_t product shifted one bit short"),
    M("fixed_quantize_round", "golden/fixed.py",
      "scaled = np.floor(np.ldexp(x, fmt.frac))",
      "scaled = np.floor(np.ldexp(x, fmt.frac) + 0.5)", GOLDEN,
      "quantisation rounds to nearest instead of floor"),
    # ------------------------------------------------------------ exp (golden)
    M("exp_hi_edge_gt", "golden/exp.py",
      "(xl < -(1 << 27)) | (xl >= (1 << 27))", "(xl < -(1 << 27)) | (xl > (1 << 27))",
      EXP, "range check '>' for '>=' at x = +16 (wrong at exactly one input)"),
    M("exp_ovf_threshold_gt", "golden/exp.py",
      "((xl & ((1 << 23) - 1)) >= 0x78A014)", "((xl & ((1 << 23) - 1)) > 0x78A014)",
      EXP, "15.94239 overflow threshold '>' for '>=' (one input)"),
    M("exp_T2_one_bit", "golden/exp.py", "TABLES = _build_tables()\n",
      "TABLES = _build_tables()\nTABLES['T2'][77] ^= np.uint64(1 << 40)\n", EXP,
      "one bit of table T2 flipped"),
    # (T3 floored instead of rounded is an equivalent mutant: no fm_t result changes)
    M("exp_T3_one_bit", "golden/exp.py",
      "t3 = [_to_int(_E(Decimal(k) * two ** -16) * two ** 55, ROUND_HALF_UP)",
      "t3 = [_to_int(_E(Decimal(k) * two ** -16) * two ** 55, ROUND_HALF_UP) ^ ((k == 5) << 40)",
      EXP, "one bit (2^40) of table T3 entry 5 flipped"),
    M("exp_mulshift_carry", "golden/exp.py",
      "        carry = (low < lo).astype(np.uint64)\n",
      "        carry = np.uint64(0) * lo\n", EXP, "128-bit product drops the low-word carry"),
    # ------------------------------------------------------------ kernels (golden)
    # (the GELU cut-off '>' for '>=' is an equivalent mutant: T[176] = 0, so the table path
    # at exactly 5.5 also returns relu(x))
    M("kernels_gelu_abs_off_by_one", "golden/kernels.py",
      "    xa = np.where(neg, wrap32(-x), x)", "    xa = np.where(neg, wrap32(-x - 1), x)",
      golden("test_exp_softmax.py", "test_gelu.py"), "GELU |x| one LSB low for negative x"),
    M("kernels_gelu_table_floor", "golden/kernels.py",
      "vals.append(math.floor(delta * (1 << frac) + 0.5))",
      "vals.append(math.floor(delta * (1 << frac)))", golden("test_exp_softmax.py", "test_gelu.py"),
      "GELU table floored instead of rounded to nearest"),
    M("kernels_softmax_sum_no_wrap", "golden/kernels.py",
      "wrap32(mul_fm(total, e) + ONE), wrap32(total + e))",
      "wrap32(mul_fm(total, e) + ONE), total + e)", golden("test_exp_softmax.py", "test_gelu.py"),
      "online softmax: the running sum no longer wraps"),
    M("kernels_softmax_rescale_shift", "golden/kernels.py",
      "wrap32(mul_fm(total, e) + ONE)", "wrap32(mul_fm(total, e, FM_FRAC - 1) + ONE)",
      golden("test_exp_softmax.py", "test_gelu.py"), "online softmax rescale shifted one bit short"),
    # ------------------------------------------------------------ numba kernels
    M("fast_recip_numerator_minus_one", "golden/_fast.py", "q = (1 << 44) // abs(x)",
      "q = ((1 << 44) - 1) // abs(x)", FAST,
      "numba 1/sum numerator 2^44 - 1 (wrong only for power-of-two sums)"),
    M("fast_wrap32_offset", "golden/_fast.py",
      "return ((v + 2147483648) & 4294967295) - 2147483648",
      "return ((v + 2147483647) & 4294967295) - 2147483647", FAST,
      "numba wrap32 offset by one (wrong at -2^31 and on wrap-around)"),
    M("fast_exp_hi_edge_gt", "golden/_fast.py", "if xl < -(1 << 27) or xl >= (1 << 27):",
      "if xl < -(1 << 27) or xl > (1 << 27):", FAST, "numba exp: '>' for '>=' at x = +16"),
    M("fast_exp_ovf_threshold_gt", "golden/_fast.py",
      "(xl & ((1 << 23) - 1)) >= 0x78A014:", "(xl & ((1 << 23) - 1)) > 0x78A014:", FAST,
      "numba exp: 15.94239 threshold '>' for '>='"),
    M("fast_softmax_step_shift", "golden/_fast.py",
      "return wrap32(((total * e) >> 22) + _ONE), s",
      "return wrap32(((total * e) >> 21) + _ONE), s", FAST,
      "numba softmax rescale shifted one bit short"),
    M("fast_mul_shift_limb", "golden/_fast.py", "return (top << (62 - s)) + (w1 >> (s - 31))",
      "return (top << (62 - s)) + (w1 >> (s - 30))", FAST, "numba 124-bit product: limb shift"),
    M("fast_qk_split_shift", "golden/_fast.py",
      "acc[ki] += wrap32(np.int64(blk[ki])) >> shift",
      "acc[ki] += wrap32(np.int64(blk[ki])) >> (shift + 1)", FAST,
      "numba Q·Kᵀ (model path): per-block scale one bit too far"),
    M("fast_gelu_fraction", "golden/_fast.py", "t = (xa & fmask) << (22 - index_shift)",
      "t = (xa & fmask) << (21 - index_shift)", FAST, "numba GELU interpolation fraction"),
    M("fast_linear_tail_row", "golden/_fast.py",
      "                a1[o] += np.floor(y0 * wT[i, o])",
      "                a1[o] += np.floor(x0 * wT[i, o])", FAST,
      "numba linear: the odd-input tail uses the wrong row"),
    M("fast_av_split_mask", "golden/_fast.py",
      "al[qi, h, ki] = np.float64(a & 4194303) * scale",
      "al[qi, h, ki] = np.float64(a & 4194302) * scale", FAST,
      "numba softmax·V: lowest weight bit dropped"),
    # ------------------------------------------------------------ numpy reference
    M("attn_key_order_rotated", "golden/attention.py", "    k0 = q % cfg.attn_parallel",
      "    k0 = (q + 1) % cfg.attn_parallel", golden("test_attention.py"),
      "softmax visiting order starts one key late"),
    M("attn_block_no_wrap", "golden/attention.py", "            blk = wrap32(prod.sum(axis=-1))",
      "            blk = prod.sum(axis=-1)", golden("test_attention.py"), "Q·Kᵀ block accumulator no longer wraps"),
    M("attn_weight_shift", "golden/attention.py",
      "return wrap32(floor_shift(e * r[:, None, :], FM_FRAC))",
      "return wrap32(floor_shift(e * r[:, None, :], FM_FRAC - 1))", golden("test_attention.py"),
      "attention weight exp·recip shifted one bit short"),
    M("linear_floor_of_sum", "golden/linear.py",
      "acc[t] = floor_shift(x[t][None, :] * w, w_frac).sum(axis=1)",
      "acc[t] = floor_shift((x[t][None, :] * w).sum(axis=1), w_frac)", golden("test_model_units.py"),
      "linear: floor of the sum instead of floor per product"),
    M("linear_bias_shift", "golden/linear.py", "<< np.int64(FM_FRAC - bias_frac)",
      "<< np.int64(FM_FRAC - bias_frac + 1)", golden("test_model_units.py"), "bias widened one bit too far"),
    M("layernorm_no_eps", "golden/layernorm.py",
      "var = wrap32(meansq - sqm + cfg.layernorm_eps_raw)", "var = wrap32(meansq - sqm)",
      golden("test_model_units.py"), "LayerNorm variance without epsilon"),
    M("layernorm_inv_dim_ceil", "golden/layernorm.py",
      "return math.floor((1 << FM_FRAC) / cfg.dim)", "return math.ceil((1 << FM_FRAC) / cfg.dim)",
      golden("test_model_units.py"), "fm_t(1/D) rounded up instead of floored"),
    M("moe_topk_ties", "golden/moe.py", "gt = s[:, None] > sc  # [n, k]",
      "gt = s[:, None] >= sc  # [n, k]", golden("test_model_moe.py"), "top-k: ties displace (>= for >)"),
    M("moe_direct_mode_dropped", "golden/moe.py",
      "in_rows = np.arange(T, dtype=np.int64) if len(rows) == T else rows",
      "in_rows = rows", golden("test_model_moe.py"), "full expert queue not read in direct mode"),
    M("moe_combine_shift", "golden/moe.py",
      "np.asarray(p_raw, np.int64)[:, None],\n                              FM_FRAC))",
      "np.asarray(p_raw, np.int64)[:, None],\n                              FM_FRAC - 1))",
      golden("test_model_moe.py"), "expert output × probability shifted one bit short"),
    M("patch_embed_kx_ky_swapped", "golden/patch_embed.py", ".transpose(1, 3, 0, 2, 4)",
      ".transpose(1, 3, 0, 4, 2)", golden("test_model_units.py"), "patch pixels visited (c, kx, ky)"),
    M("patch_embed_pos_shifted", "golden/patch_embed.py",
      "out[1:] = wrap32(acc + bias[None, :] + pos[1:])",
      "out[1:] = wrap32(acc + bias[None, :] + pos[:-1])", golden("test_model_units.py"),
      "position embedding one row off"),
    M("model_residual_no_wrap", "golden/model.py", "            x = wrap32(x + proj)",
      "            x = x + proj", golden("test_model.py"), "attention residual no longer wraps"),
    M("model_ln2_gain", "golden/model.py",
      "ln2 = layernorm(x, w.norm_weights[L, 1], w.norm_bias[L, 1], cfg)",
      "ln2 = layernorm(x, w.norm_weights[L, 0], w.norm_bias[L, 1], cfg)", golden("test_model.py"),
      "second LayerNorm uses the first one's gain"),
    # ------------------------------------------------------------ RTL units
    M("rtl_pipeline_load_in_stall", "hw/units/pipeline.py",
      "        with self.m.If(self.advance):\n            self.m.d.sync += r.eq(value)",
      "        with self.m.If(1):\n            self.m.d.sync += r.eq(value)", pysim("exp"),
      "pipeline registers load while stalled"),
    M("rtl_pipeline_rom_enable", "hw/units/pipeline.py",
      "port.en.eq(self.advance)", "port.en.eq(1)", pysim("exp"),
      "ROM read port not frozen by a stall"),
    M("rtl_pipeline_input_valid", "hw/units/pipeline.py",
      "m.d.comb += self.valid.eq(i.valid & ready)", "m.d.comb += self.valid.eq(i.valid)",
      pysim("softmax"), "stage-0 valid ignores a held-back input (hazard)"),
    M("rtl_exp_hi_edge_gt", "hw/units/exp.py", "(ipart >= 16)", "(ipart > 16)", pysim("exp"),
      "RTL exp range check '>' for '>=' at +16"),
    M("rtl_exp_ovf_threshold_gt", "hw/units/exp.py", "(frac2 >= 0x78A014)",
      "(frac2 > 0x78A014)", pysim("exp"), "RTL exp 15.94239 threshold '>' for '>='"),
    M("rtl_exp_ind2_field", "hw/units/exp.py", "ind2 = x[11:19]", "ind2 = x[12:20]",
      pysim("exp"), "RTL exp table index field one bit off"),
    M("rtl_exp_c_shift", "hw/units/exp.py", "c = pipe.reg(((pba >> 55) + sa)[:48]",
      "c = pipe.reg(((pba >> 54) + sa)[:48]", pysim("exp"), "RTL exp B·A shift off by one"),
    M("rtl_gelu_index_shift", "hw/units/gelu.py",
      "idx = pipe.reg(Mux(sat, 0, xa[sh:sh + spec.index_bits]), \"idx\")",
      "idx = pipe.reg(Mux(sat, 0, xa[sh + 1:sh + 1 + spec.index_bits]), \"idx\")", pysim("gelu"),
      "RTL GELU table index shifted one bit"),
    M("rtl_gelu_table_bit", "hw/units/gelu.py",
      "pairs = [a | (table[min(k + 1, spec.entries - 1)] << tw)",
      "pairs = [(a ^ (k == 7)) | (table[min(k + 1, spec.entries - 1)] << tw)", pysim("gelu"),
      "one bit of the GELU ROM"),
    M("rtl_gelu_abs_ones_complement", "hw/units/gelu.py",
      "xa = Mux(neg, (-x)[:32].as_signed(), x)", "xa = Mux(neg, (~x)[:32].as_signed(), x)",
      pysim("gelu"), "|x| as one's complement (off by one)"),
    M("rtl_divide_ge_gt", "hw/units/divide.py", "        ge = ~diff[-1] ",
      "        ge = ~diff[-1] & diff.any() ", pysim("div"), "restoring divider '>' for '>='"),
    M("rtl_divide_sign_or", "hw/units/divide.py", "(a < 0) ^ (b < 0)", "(a < 0) | (b < 0)",
      pysim("div"), "quotient sign OR instead of XOR"),
    M("rtl_recip_neg_ones_complement", "hw/units/divide.py",
      "Mux(zr, 0, Mux(ng, (-q)[:out_width], q))", "Mux(zr, 0, Mux(ng, (~q)[:out_width], q))",
      pysim("recip"), "negative quotient one's complement (dropped +1)"),
    M("rtl_divide_abs", "hw/units/divide.py", "return Mux(v < 0, -v, v)[:width]",
      "return Mux(v < 0, ~v, v)[:width]", pysim("recip"), "|x| off by one for negatives"),
    M("rtl_sqrt_floor_not_rhu", "hw/units/sqrt.py", "    return (root + 1) >> 1",
      "    return root >> 1", pysim("sqrt"), "RTL sqrt rounds down instead of half up"),
    M("rtl_sqrt_ge_gt", "hw/units/sqrt.py", "ge = ~diff[-1] ", "ge = ~diff[-1] & diff.any() ",
      pysim("sqrt"), "restoring square root '>' for '>='"),
    M("rtl_rsqrt_off_by_one", "hw/units/sqrt.py",
      "return recip_stages(pipe, s, self.frac, self.width)",
      "return recip_stages(pipe, s + 1, self.frac, self.width)", pysim("rsqrt"),
      "rstd of sqrt + 1 LSB"),
    M("rtl_softmax_rescale_shift", "hw/units/softmax.py", "((prod >> frac) + one)[:w]",
      "((prod >> (frac - 1)) + one)[:w]", pysim("softmax"),
      "RTL softmax rescale shifted one bit short"),
    M("rtl_softmax_no_forwarding", "hw/units/softmax.py",
      "fwd_hit.eq(pipe.valid & (pipe[\"row\"] == read_row) & read_valid)", "fwd_hit.eq(0)",
      pysim("softmax"),
      "write forwarding removed"),
    M("rtl_softmax_hazard_stage_skipped", "hw/units/softmax.py",
      "allow.eq(inp.first | ~Cat(*conflicts).any())",
      "allow.eq(inp.first | ~Cat(*conflicts[1:]).any())", pysim("softmax"),
      "hazard check skips one pipeline stage"),
    M("rtl_softmax_emit_every_score", "hw/units/softmax.py",
      "pipe.finish(out, valid=pipe.valid & last)", "pipe.finish(out, valid=pipe.valid)",
      pysim("softmax"), "a result leaves for every score, not only the row's last"),
    # ------------------------------------------------------------ attention unit (RTL)
    M("rtl_attn_product_shift", "hw/units/attention.py",
      "_wrap32((_word(x, o * FBW + j) * _word(y, j)) >> frac)",
      "_wrap32((_word(x, o * FBW + j) * _word(y, j)) >> (frac - 1))",
      ATTN_RTL, "shared array's products (Q·K and A·V) shifted one bit short"),
    M("rtl_attn_grant_ignores_drain", "hw/units/attention.py",
      "m.d.sync += flip.eq(~flip & ~h_busy & (done | h_yields))",
      "m.d.sync += flip.eq(~flip & (done | h_yields))",
      ATTN_SHARE, "the array's grant moves while the holder's steps are still in it"),
    M("rtl_attn_block_scale", "hw/units/attention.py",
      "Mux(f[\"hf\"], 0, acc) + (blk >> scale)", "Mux(f[\"hf\"], 0, acc) + (blk >> (scale + 1))",
      ATTN_RTL, "per-block scale one bit too far"),
    M("rtl_attn_first_key", "hw/units/attention.py",
      "f\"first{o}\": ci.key_is(o),", "f\"first{o}\": ci.key_is(0),", ATTN_RTL,
      "softmax row starts at key 0, not at the lane's first key (visiting order)"),
    M("rtl_attn_max_from_recip_word", "hw/units/attention.py",
      "mx[h].eq(_word(self.info.payload, 2 * h + 1))", "mx[h].eq(_word(self.info.payload, 2 * h))",
      ATTN_RTL, "softmax·V takes the max from the recip word"),
    M("rtl_attn_av_shift", "hw/units/attention.py", "pipe.finish(_wrap32(prod >> frac))",
      "pipe.finish(_wrap32(prod >> (frac + 1)))", ATTN_RTL,
      "attention weight exp·recip shifted one bit too far"),
    # ------------------------------------------------------------ HLS C++
    M("hls_exp_hi_edge_gt", "hw/hls/moevit_exp.h", "xl >= (ap_int<33>(1) << 27)",
      "xl > (ap_int<33>(1) << 27)", HLS_EXP, "C++ exp range check '>' for '>=' at +16"),
    M("hls_exp_ecomb_shift", "hw/hls/moevit_exp.h", "ap_uint<50> ecomb = esum >> 6;",
      "ap_uint<50> ecomb = esum >> 5;", HLS_EXP, "C++ exp Ecomb shift off by one"),
    M("hls_attn_scale", "hw/hls/attention.cpp",
      "const fm_t scale = fm_t(1.0 / (1 << ATTN_SCALE_SHIFT));",
      "const fm_t scale = fm_t(1.0 / (1 << (ATTN_SCALE_SHIFT + 1)));", HLS_ATTN,
      "C++ per-block scale one bit too far"),
    M("hls_attn_recip_numerator", "hw/hls/attention.cpp", "    fm_t one = 1;\n",
      "    fm_t one = 1;\n    one += fm_t(1.0 / (1 << 22));\n", HLS_ATTN,
      "C++ recip numerator one LSB high"),
    M("hls_attn_acc_not_reset", "hw/hls/attention.cpp",
      "fm_t base = key == o ? fm_t(0) : accrow[o][db][j];", "fm_t base = accrow[o][db][j];",
      HLS_ATTN, "C++ softmax·V accumulator not reset at the row's first key"),
    M("hls_attn_exp_arg_swapped", "hw/hls/attention.cpp",
      "moevit_exp(fm_t(cur[o * HL + h] - mx[o][h]))", "moevit_exp(fm_t(mx[o][h] - cur[o * HL + h]))",
      HLS_ATTN, "C++ exp argument max - s instead of s - max"),
    # ------------------------------------------------------------ datapath units (issue 10)
    M("rtl_linear_product_floor", "hw/units/linear.py",
      "m.d.sync += p.eq((xs[i] * wv) >> fmt.shift)",
      "m.d.sync += p.eq((xs[i] * wv) >> (fmt.shift + 1))", LINEAR_RTL,
      "linear engine: per-product floor one bit too far"),
    M("rtl_linear_bias_dropped", "hw/units/linear.py",
      "Mux(cs[\"first\"], Mux(cs[\"nobias\"], 0, bias), acc)",
      "Mux(cs[\"first\"], 0, acc)", LINEAR_RTL,
      "linear engine: accumulator starts at 0 instead of the bias tile"),
    M("rtl_linear_cls_bias_kept", "hw/units/linear.py", "Mux(cs[\"nobias\"], 0, bias)",
      "Mux(0, 0, bias)", LINEAR_RTL,
      "linear engine: the cls row of a patch pass gets the bias (token 0 != pos_embed[0])"),
    M("rtl_linear_pixel_lane_shift", "hw/units/linear.py", "Cat(Const(0, lsh), pix_t",
      "Cat(Const(0, lsh + 1), pix_t", LINEAR_RTL,
      "linear engine: pixel mode puts the pixel one bit too high in its lane (2x products)"),
    M("rtl_linear_bias_hold_dropped", "hw/units/linear.py",
      "b_go = busy & ~(wfull | hold_mask).bit_select(bank, 1) & ~b_done",
      "b_go = busy & ~wfull.bit_select(bank, 1) & ~b_done", LINEAR_RTL,
      "linear engine: a load overwrites a freed bank's biases still to be read"),
    M("rtl_linear_score_floor", "hw/units/linear.py", "sj = (prods[j] >> frac)[:FM_W]",
      "sj = (prods[j] >> (frac - 1))[:FM_W]", LINEAR_RTL,
      "linear engine: gate-score multiply floored one bit short"),
    M("rtl_layernorm_eps_dropped", "hw/units/layernorm.py",
      "(msq >> frac)[:w] + cfg.layernorm_eps_raw)", "(msq >> frac)[:w])", LAYERNORM,
      "LayerNorm: var without + eps"),
    M("rtl_layernorm_gain_floor", "hw/units/layernorm.py",
      "y1 = [(p1[j] >> frac)[:w].as_signed() for j in range(n)]",
      "y1 = [(p1[j] >> (frac + 1))[:w].as_signed() for j in range(n)]", LAYERNORM,
      "LayerNorm: ·rstd product floored one bit too far"),
    M("rtl_layernorm_mean_not_subtracted", "hw/units/layernorm.py",
      "(xr[j] - mean)[:w].as_signed()", "(xr[j] - 0)[:w].as_signed()", LAYERNORM,
      "LayerNorm: the mean is not subtracted"),
    M("rtl_residual_no_wrap", "hw/units/residual.py",
      "(lane(x, j, w) + lane(y, j, w))[:w]", "(lane(x, j, w) + lane(y, j, w))[1:w + 1]",
      RESIDUAL, "residual add: sum taken one bit up instead of wrapped"),
    M("rtl_moe_gate_topk_ge", "hw/units/moe_gate.py", "gt = [s > cur_sc[j] for j in range(K)]",
      "gt = [s >= cur_sc[j] for j in range(K)]", MOE_GATE_RTL,
      "MoE gate: top-k insertion '>=' (a tie displaces the lower expert index)"),
    M("rtl_moe_gate_lo_floor", "hw/units/dsp_mul.py",
      "f = min([self.shift] + [sj for j, (_, sj) in enumerate(terms) if j != i])",
      "f = self.shift", MOE_GATE_RTL,
      "MoE gate (dsp_mul.FloorProductPipe): the split logit product's terms floored one "
      "by one (a sum of floors instead of the floor of the sum)"),
    M("rtl_replay_pass_wrap", "hw/units/stream_replay.py",
      "ra_last.eq(Mux(ra_last, single, ra == last_m1))",
      "ra_last.eq(Mux(ra_last, 0, ra == last_m1))", REPLAY,
      "K/V replay: after the first replayed pass the wrap flag is lost (passes run long)"),
    M("rtl_replay_early_read_single", "hw/units/stream_replay.py",
      "with m.If(~single):", "with m.If(1):", REPLAY,
      "K/V replay: a one-beat pass is read back in the cycle it is written (stale beat)"),
    M("rtl_moe_gate_sum_rescale", "hw/units/moe_gate.py",
      "rescaled = ((prod >> g.fm_frac) + one)[:W]", "rescaled = ((prod >> g.fm_frac))[:W]",
      MOE_GATE_RTL, "MoE gate: online-softmax rescale drops the + 1.0 of the new maximum"),
]


# ---------------------------------------------------------------------------- locating
def locate(m: Mutant, root: Path = ROOT) -> tuple[int | None, str]:
    """(line number of the snippet, "") or (None, why it is stale)."""
    path = root / m.file
    if not path.is_file():
        return None, f"{m.file} does not exist"
    text = path.read_text()
    n = text.count(m.find)
    if n != 1:
        return None, f"snippet occurs {n} times in {m.file} (must be exactly once)"
    return text[:text.index(m.find)].count("\n") + 1, ""


# ---------------------------------------------------------------------------- scratch tree
def _ignore(dirpath, names):
    skip = {".venv", "build", ".git", ".pytest_cache", "__pycache__", "moevit.egg-info"}
    return [n for n in names if n in skip or n.endswith(".egg-info")]


def make_scratch(scratch: Path) -> tuple[Path, Path]:
    """Fresh copy of the tree at ``scratch/tree`` and the package root ``scratch/pkgroot``."""
    tree, pkg = scratch / "tree", scratch / "pkgroot"
    for d in (tree, pkg):
        if d.exists():
            shutil.rmtree(d)
    shutil.copytree(ROOT, tree, ignore=_ignore, symlinks=True)
    shutil.copytree(tree / "moevit", pkg / "moevit")
    for sub in SUBPACKAGES:
        (pkg / "moevit" / sub).symlink_to(tree / sub, target_is_directory=True)
    return tree, pkg


def test_env(pkg: Path, cache: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(pkg) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["MOEVIT_BUILD"] = str(cache)
    env.pop("PYTEST_ADDOPTS", None)
    return env


def canary(tree: Path, pkg: Path, env: dict) -> None:
    """Check that the test subprocess imports the scratch copy: plant a marker in every
    subpackage and in the core, import them with the test environment, read it back."""
    token = f"canary-{os.getpid()}-{time.time_ns()}"
    files = [tree / sub / "__init__.py" for sub in SUBPACKAGES] + [pkg / "moevit" / "__init__.py"]
    saved = {f: f.read_text() for f in files}
    try:
        for f in files:
            f.write_text(saved[f] + f"\nMUTANT_CANARY = {token!r}\n")
        code = ("import importlib, sys\n"
                "for n in ['moevit'] + ['moevit.' + s for s in %r]:\n"
                "    m = importlib.import_module(n)\n"
                "    print(n, getattr(m, 'MUTANT_CANARY', None), m.__file__)\n" % (SUBPACKAGES,))
        out = subprocess.run([sys.executable, "-P", "-c", code], cwd=tree, env=env,
                             capture_output=True, text=True, timeout=120)
        lines = out.stdout.split("\n")
        bad = [ln for ln in lines if ln and token not in ln]
        if out.returncode or bad or len([ln for ln in lines if ln]) != 1 + len(SUBPACKAGES):
            raise SystemExit(f"canary failed: the test environment does not import the scratch "
                             f"copy:\n{out.stdout}{out.stderr}")
    finally:
        for f, t in saved.items():
            f.write_text(t)


# ---------------------------------------------------------------------------- running
_FAIL = re.compile(r"^(FAILED|ERROR) (\S+)", re.M)


def run_mutant(m: Mutant, tree: Path, env: dict, timeout: int) -> dict:
    path = tree / m.file
    original = path.read_text()
    st = path.stat()
    line, why = locate(m, tree)
    if line is None:
        return dict(status="STALE", line=None, killer=why, seconds=0.0)
    path.write_text(original.replace(m.find, m.replace, 1))
    cmd = [sys.executable, "-P", "-m", "pytest", "-x", "-q", "-p", "no:xdist", "-p",
           "no:cacheprovider", "-m", "not slow", "-o", "addopts=-ra --import-mode=importlib",
           *m.tests]
    t0 = time.monotonic()
    try:
        out = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True,
                             timeout=timeout)
        rc, text = out.returncode, out.stdout + out.stderr
    except subprocess.TimeoutExpired as exc:
        rc, text = None, (exc.stdout or b"").decode(errors="replace") if isinstance(
            exc.stdout, bytes) else (exc.stdout or "")
    finally:
        path.write_text(original)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # numba's cache stays valid
    secs = time.monotonic() - t0
    hit = _FAIL.search(text)
    if rc is None:
        status, killer = "TIMEOUT", f"no verdict within {timeout} s"
    elif rc == 0:
        status, killer = "SURVIVED", "-"
    elif rc == 1 and hit:
        status, killer = "killed", hit.group(2)
    elif rc in (1, 2) and hit:
        status, killer = "killed", f"{hit.group(2)} (error)"
    else:
        status, killer = "NO VERDICT", f"pytest exit {rc}: " + text.strip().splitlines()[-1:][0] \
            if text.strip() else f"pytest exit {rc}"
    return dict(status=status, line=line, killer=killer, seconds=round(secs, 1), log=text)


def write_table(results, path: Path, minutes: float) -> str:
    killed = sum(r["status"] == "killed" for _, r in results)
    lines = ["# Mutation check (`make mutants`)", "",
             f"{killed} of {len(results)} mutants killed by the fast tests "
             f"(`pytest -x -m \"not slow\"` on the mutant's selection), "
             f"{minutes:.1f} min in all, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
             "Each mutant is one small fault applied alone to a scratch copy of the tree "
             "(scripts/mutants.py lists the snippet, its replacement and the tests).", "",
             "| mutant | file:line | fault | result | killed by | s |",
             "|---|---|---|---|---|---|"]
    for m, r in results:
        loc = f"{m.file}:{r['line']}" if r["line"] else m.file
        lines.append(f"| {m.name} | {loc} | {m.what} | {r['status']} | "
                     f"`{r['killer']}` | {r['seconds']} |")
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only check that every snippet matches")
    ap.add_argument("-k", dest="select", default="", help="run mutants whose name contains this")
    ap.add_argument("--out", type=Path, default=None,
                    help="table file (default: bench/mutants.md for a full run; a -k selection "
                         "writes build/mutants/selection.md so the recorded table stays whole)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per mutant")
    ap.add_argument("--scratch", type=Path, default=ROOT / "build" / "mutants")
    a = ap.parse_args(argv)
    if a.out is None:
        a.out = (ROOT / "build" / "mutants" / "selection.md" if a.select
                 else ROOT / "bench" / "mutants.md")

    chosen = [m for m in MUTANTS if a.select in m.name]
    stale = [(m, why) for m in chosen for line, why in [locate(m)] if line is None]
    for m, why in stale:
        print(f"STALE {m.name}: {why}")
    if a.check:
        print(f"{len(chosen) - len(stale)} of {len(chosen)} mutants match the tree")
        return 1 if stale else 0

    a.scratch = a.scratch.resolve()  # PYTHONPATH must not depend on the test's cwd
    tree, pkg = make_scratch(a.scratch)
    env = test_env(pkg, a.scratch / "cache")
    canary(tree, pkg, env)
    print(f"scratch copy {tree}; canary ok (every subpackage imported from the copy)")
    results = []
    t0 = time.monotonic()
    for i, m in enumerate(chosen, 1):
        r = run_mutant(m, tree, env, a.timeout)
        results.append((m, r))
        print(f"[{i:2}/{len(chosen)}] {r['status']:8} {m.name:36} {m.file}:{r['line']}  "
              f"{r['killer']}  {r['seconds']} s", flush=True)
        if r["status"] not in ("killed", "STALE"):
            (a.scratch / f"{m.name}.log").write_text(r.get("log", ""))
    minutes = (time.monotonic() - t0) / 60
    text = write_table(results, a.out, minutes)
    print(text.split("\n")[2])
    print(f"table written to {a.out}")
    return 0 if all(r["status"] == "killed" for _, r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
