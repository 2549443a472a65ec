"""Run the HLS C++ attention kernel (``hw/hls/attention.cpp``) in C simulation from Python.

The kernel and its stream driver are compiled with g++ against the ap_fixed headers that
hls4ml ships (:func:`moevit.hw.cxx.compile_cxx`) into a shared library per configuration,
then called through ctypes on raw int32 arrays in the DRAM layouts of spec §7.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from moevit.config import AcceleratorConfig
from moevit.errors import ShapeError
from moevit.hw.cxx import compile_cxx
from moevit.hw.hls_config import HLS_DIR, write_config_header
from moevit.hw.units.attention_schedule import geometry

_SOURCES = ("attention.cpp", "attention_csim.cpp")
_HEADERS = ("attention.h", "moevit_exp.h")
_ERRORS = {-1: "q/k streams not fully consumed", -2: "wrong number of score beats",
           -3: "wrong number of softmax-info rows", -4: "v/score/info streams not fully consumed",
           -5: "wrong number of output beats"}


@dataclass
class HlsAttentionResult:
    score_buffer: np.ndarray  # [QB][T][P][head_lanes] int64
    softmax_info: np.ndarray  # [T][softmax_info_width]
    av: np.ndarray  # [T][D]


@lru_cache(maxsize=None)
def _library(cfg: AcceleratorConfig) -> ctypes.CDLL:
    inc = write_config_header(cfg)
    lib_path = compile_cxx(
        f"libmoevit_attention_{cfg.digest}.so", [HLS_DIR / s for s in _SOURCES],
        include_dirs=[inc, HLS_DIR], flags=("-O2", "-shared", "-fPIC"),
        depends=[HLS_DIR / h for h in _HEADERS]
        + [inc / h for h in ("moevit_config.h", "moevit_exp_tables.h")])
    lib = ctypes.CDLL(str(lib_path))
    i32p = np.ctypeslib.ndpointer(dtype=np.int32, flags="C_CONTIGUOUS")
    lib.moevit_attention_run.argtypes = [i32p] * 6
    lib.moevit_attention_run.restype = ctypes.c_int
    lib.moevit_exp_raw.argtypes = [i32p, i32p, ctypes.c_int64]
    lib.moevit_exp_raw.restype = ctypes.c_int
    return lib


def _as_i32(a, shape, name) -> np.ndarray:
    a = np.asarray(a)
    if a.shape != shape:
        raise ShapeError(f"{name}: expected shape {shape}, got {a.shape}")
    if a.min(initial=0) < -(1 << 31) or a.max(initial=0) >= (1 << 31):
        raise ShapeError(f"{name}: raw fm_t values must fit int32")
    return np.ascontiguousarray(a, dtype=np.int32)


def run_attention(q_raw, k_raw, v_raw, cfg: AcceleratorConfig) -> HlsAttentionResult:
    """Run both kernel modes (Q·Kᵀ + statistics, then softmax·V) on raw fm_t [T, D] inputs."""
    g = geometry(cfg)
    T, D = cfg.tokens, cfg.dim
    q, k, v = (_as_i32(a, (T, D), n) for a, n in ((q_raw, "q"), (k_raw, "k"), (v_raw, "v")))
    lib = _library(cfg)
    scores = np.zeros(g.score_beats * cfg.feature_block, dtype=np.int32)
    info = np.zeros((T, cfg.softmax_info_width), dtype=np.int32)
    out = np.zeros((T, D), dtype=np.int32)
    rc = lib.moevit_attention_run(q, k, v, scores, info, out)
    if rc != 0:
        raise RuntimeError(f"HLS attention C-sim failed: {_ERRORS.get(rc, rc)}")
    sb = scores[:g.score_words].astype(np.int64).reshape(
        g.query_blocks, T, g.lanes, g.head_lanes)
    return HlsAttentionResult(sb, info.astype(np.int64), out.astype(np.int64))


def hls_exp_cxx(x_raw, cfg: AcceleratorConfig) -> np.ndarray:
    """The C++ ``moevit_exp`` on raw fm_t inputs (int64 array in, int64 out)."""
    x = np.ascontiguousarray(np.asarray(x_raw, dtype=np.int64).astype(np.int32).ravel())
    y = np.zeros_like(x)
    _library(cfg).moevit_exp_raw(x, y, x.size)
    return y.astype(np.int64).reshape(np.shape(x_raw))
