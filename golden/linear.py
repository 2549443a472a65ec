"""Unified linear unit (spec §4.3) on raw integers, with optional table GELU (§4.4).

  Y[t][o] = G( wrap32( B_o·2^(22-Fb) + Σ_i ⌊X[t][i]·W[o][i] / 2^Fw⌋ ) )

Every product is floored to fm_t before the (exact, order-free) sum.  :func:`linear_ref` is
the plain numpy statement of the rule; :func:`linear` is the fast path used by the model
(numba, exact float64 products; see :mod:`moevit.golden._fast`), tested equal to it.
"""

from __future__ import annotations

import numpy as np

from moevit.errors import ShapeError
from moevit.golden import _fast
from moevit.golden.fixed import FM_FRAC, floor_shift, wrap32


def _shapes(x, w, b):
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ShapeError(f"linear: input {x.shape} does not match weights [out][in] {w.shape}")
    if b is not None:
        b = np.asarray(b, dtype=np.int64)
        if b.shape != (w.shape[0],):
            raise ShapeError(f"linear: bias {b.shape} does not match {w.shape[0]} outputs")
    return x, w, b


def bias_term(b, bias_frac: int) -> np.ndarray:
    """Bias widened exactly to fm_t: B·2^(22 - Fb)."""
    return np.asarray(b, dtype=np.int64) << np.int64(FM_FRAC - bias_frac)


def linear_ref(x, w, b, *, w_frac: int, bias_frac: int = FM_FRAC, gelu=None) -> np.ndarray:
    """Reference: int64 broadcasting, one row at a time.  ``b`` may be None (no bias)."""
    x, w, b = _shapes(x, w, b)
    acc = np.zeros((x.shape[0], w.shape[0]), dtype=np.int64)
    for t in range(x.shape[0]):
        acc[t] = floor_shift(x[t][None, :] * w, w_frac).sum(axis=1)
    if b is not None:
        acc += bias_term(b, bias_frac)[None, :]
    y = wrap32(acc)
    return gelu(y) if gelu is not None else y


def scaled_weights_T(w, w_frac: int) -> np.ndarray:
    """float64 [in][out] weights times 2^-w_frac (exact): the fast kernel's operand."""
    return np.ascontiguousarray(np.ldexp(np.asarray(w, dtype=np.float64), -w_frac).T)


def linear(x, w, b, *, w_frac: int, bias_frac: int = FM_FRAC, gelu=None, rows=None,
           wT=None) -> np.ndarray:
    """Fast linear unit; bit-identical to :func:`linear_ref` on ``x[rows]``.

    ``rows`` gathers input rows (the expert queues, §4.3 indirect mode); ``wT`` may pass a
    cached :func:`scaled_weights_T` of ``w``.  Inputs must be fm_t raw (|x| < 2^31) and
    weights at most 16 bits so that products stay exact in float64.
    """
    x, w, b = _shapes(x, w, b)
    if rows is None:
        rows = np.arange(x.shape[0], dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    if wT is None:
        wT = scaled_weights_T(w, w_frac)
    acc = _fast.linear_sums(np.ascontiguousarray(x), wT, rows)
    if b is not None:
        acc += bias_term(b, bias_frac)[None, :]
    y = wrap32(acc)
    return gelu(y) if gelu is not None else y
