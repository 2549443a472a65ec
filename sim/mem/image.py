"""Memory image files of the simulated DRAM (:file:`moevit_sim_mem.v`), written and read
with numpy (no per-word Python).

Format: ``$readmemh`` / ``$writememh`` text, one ``word_bytes``-byte word per line as
``2 * word_bytes`` hex digits, most significant first (the word's bytes are little-endian,
byte address ``a`` is byte ``a % word_bytes`` of word ``a // word_bytes``); ``@<hex word
index>`` lines set the index of the next word.  Word indices count from the memory's byte
address ``base``.

* :func:`write_image`: ``{byte address: bytes or numpy array}`` regions -> a file that
  loads exactly those words (everything else keeps its contents).
* :func:`read_dump`: a ``$writememh`` dump of words ``first..last`` -> uint8 array;
  :func:`dump_words` gives the word range covering a byte region.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moevit.errors import ConfigError

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
#: ASCII code -> hex digit value (255: not a hex digit)
_UNHEX = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _UNHEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _UNHEX[_c] = 10 + _i


def _as_bytes(data) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    return np.frombuffer(bytes(data), dtype=np.uint8)


def words_hex(data: np.ndarray, word_bytes: int) -> bytes:
    """Hex lines (``\\n``-terminated) of little-endian words; ``data`` is zero-padded to whole
    words."""
    data = _as_bytes(data)
    pad = (-len(data)) % word_bytes
    if pad:
        data = np.concatenate([data, np.zeros(pad, np.uint8)])
    words = data.reshape(-1, word_bytes)[:, ::-1]            # most significant byte first
    out = np.empty((len(words), 2 * word_bytes + 1), np.uint8)
    out[:, 0:-1:2] = _HEX[words >> 4]
    out[:, 1:-1:2] = _HEX[words & 15]
    out[:, -1] = ord("\n")
    return out.tobytes()


def write_image(path, regions: dict, *, word_bytes: int, base: int = 0,
                words: int | None = None) -> Path:
    """Write ``regions`` ({byte address: bytes/bytearray/numpy array}) as a ``$readmemh``
    file.  Each region starts on a word (``address % word_bytes == 0``); its last word is
    zero-padded.  Regions may not share a word.  ``words`` (the memory's size) is checked
    when given."""
    spans = []
    for addr, data in regions.items():
        arr = _as_bytes(data)
        off = addr - base
        if off < 0 or off % word_bytes:
            raise ConfigError(f"region at 0x{addr:x} must start on a {word_bytes}-byte word at "
                              f"or above the memory base 0x{base:x}; align the buffer")
        first = off // word_bytes
        n = -(-len(arr) // word_bytes)
        if words is not None and first + n > words:
            raise ConfigError(f"region 0x{addr:x} + {len(arr)} bytes ends past the simulated "
                              f"memory (0x{base:x} + {words * word_bytes} bytes); raise the "
                              f"memory size (words_log2)")
        spans.append((first, n, arr))
    spans.sort(key=lambda s: s[0])
    for (f0, n0, _), (f1, _, _) in zip(spans, spans[1:]):
        if f0 + n0 > f1:
            raise ConfigError(f"regions at words {f0} and {f1} overlap (or share a word)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for first, n, arr in spans:
            if n:
                fh.write(b"@%x\n" % first)
                fh.write(words_hex(arr, word_bytes))
    return path


def dump_words(addr: int, nbytes: int, *, word_bytes: int, base: int = 0) -> tuple[int, int]:
    """``(first, last)`` word indices covering bytes ``addr .. addr + nbytes - 1``."""
    if nbytes <= 0:
        raise ConfigError(f"dump of {nbytes} bytes: need at least one")
    off = addr - base
    if off < 0:
        raise ConfigError(f"address 0x{addr:x} is below the memory base 0x{base:x}")
    return off // word_bytes, (off + nbytes - 1) // word_bytes


def read_dump(path, *, word_bytes: int, words: int | None = None) -> np.ndarray:
    """Bytes (uint8, little-endian words in order) of a ``$writememh`` dump.  ``@`` lines and
    ``//`` comments are skipped (a ranged dump is contiguous); ``words`` checks the count."""
    raw = Path(path).read_bytes()
    digits = 2 * word_bytes
    if b"@" in raw or b"/" in raw or b"\r" in raw:
        raw = b"\n".join(ln.strip() for ln in raw.split(b"\n")
                         if not ln.strip().startswith((b"@", b"//")))
    raw = raw.strip(b"\n") + b"\n"
    body = np.frombuffer(raw, np.uint8)
    if len(body) % (digits + 1) == 0 and (body[digits::digits + 1] == ord("\n")).all():
        text = body.reshape(-1, digits + 1)[:, :digits]    # fixed-width lines: all numpy
    else:                                                   # short lines: pad each
        lines = [ln.strip() for ln in raw.split(b"\n") if ln.strip()]
        if any(len(ln) > digits for ln in lines):
            raise ConfigError(f"{path}: a line is longer than {digits} hex digits; is "
                              f"word_bytes {word_bytes} the memory's data width / 8?")
        text = np.frombuffer(b"".join(ln.rjust(digits, b"0") for ln in lines), np.uint8)
    nib = _UNHEX[text.reshape(-1)]
    if (nib == 255).any():
        raise ConfigError(f"{path}: non-hex characters (x/z bits in the dumped memory?)")
    nib = nib.reshape(-1, word_bytes, 2)
    out = ((nib[:, :, 0] << 4) | nib[:, :, 1]).astype(np.uint8)[:, ::-1].reshape(-1)
    if words is not None and len(out) != words * word_bytes:
        raise ConfigError(f"{path}: {len(out) // word_bytes} words dumped, expected {words}")
    return out
