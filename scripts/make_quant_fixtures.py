#!/usr/bin/env python3
"""Write tests/fixtures/quant/: reference (de)quantizations of the GGUF block types by the
`gguf` Python package, for tests/test_quant.c.

Pinned (the script refuses other versions, so the fixtures are reproducible):
    gguf==0.19.0 numpy==2.4.6        (pip install gguf==0.19.0 numpy==2.4.6)

Usage:  python3 scripts/make_quant_fixtures.py [--out DIR]     (default tests/fixtures/quant)

File format (all little-endian), one file per (kind, type):
    offset  0  char[4]  magic "QMQF"
            4  u32      version = 1
            8  u32      kind: 1 = dequant, 2 = quantize, 3 = dequant with non-finite scales
           12  char[8]  type name, NUL padded ("Q4_K")
           20  u32      nblocks
           24  u32      block_bytes
           28  u32      block_elems
           32  kind 1, 3: nblocks*block_bytes block bytes, then nblocks*block_elems f32 =
                          gguf.quants.dequantize of those bytes
               kind 2:    nblocks*block_elems f32 inputs, then nblocks*block_bytes =
                          gguf.quants.quantize of those inputs
Files: dequant_<type>.bin (kind 1: edge blocks then random blocks; every f16 field finite),
nonfinite_<type>.bin (kind 3: inf/NaN in d, m or dmin; compared as "same bits or both NaN"),
quantize_<type>.bin (kind 2, Q8_0 and Q4_0).
"""
import argparse
import os
import struct
import sys

import numpy as np

PINNED = {"gguf": "0.19.0", "numpy": "2.4.6"}

try:
    from importlib.metadata import version
except ImportError:  # pragma: no cover
    sys.exit("python >= 3.8 needed")

for pkg, want in PINNED.items():
    have = version(pkg)
    if have != want:
        sys.exit(f"make_quant_fixtures.py needs {pkg}=={want} (found {have})")

from gguf import GGMLQuantizationType as QT  # noqa: E402
import gguf.quants  # noqa: E402

# name: (block elems, block bytes, offsets of f16 fields, code byte ranges [(lo, hi)])
TYPES = {
    "Q8_0": (32, 34, [0], [(2, 34)]),
    "Q4_0": (32, 18, [0], [(2, 18)]),
    "Q4_1": (32, 20, [0, 2], [(4, 20)]),
    "Q5_0": (32, 22, [0], [(2, 22)]),
    "Q5_1": (32, 24, [0, 2], [(4, 24)]),
    "Q4_K": (256, 144, [0, 2], [(16, 144)]),
    "Q5_K": (256, 176, [0, 2], [(16, 176)]),
    "Q6_K": (256, 210, [208], [(0, 192)]),
}
K_SCALES = {"Q4_K": (4, 16), "Q5_K": (4, 16), "Q6_K": (192, 208)}  # scale byte ranges

F16_EDGE = [
    0x0000, 0x8000,  # +0, -0
    0x0001, 0x8001, 0x03FF, 0x83FF,  # smallest / largest subnormal
    0x0400, 0x8400,  # smallest normal
    0x7BFF, 0xFBFF,  # largest finite
    0x3C00, 0xBC00, 0x3555, 0xC86F,  # ordinary
]
F16_NONFINITE = [0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01, 0x7FFF]  # +-inf, qNaN, sNaN, NaN


def rng_f16_finite(rng, n):
    """Random f16 bit patterns, every exponent but 31 equally likely, random sign/mantissa."""
    v = rng.integers(0, 1 << 16, size=n, dtype=np.uint32)
    exp = rng.integers(0, 31, size=n, dtype=np.uint32)
    return ((v & 0x83FF) | (exp << 10)).astype(np.uint16)


def set16(blk, off, h):
    blk[off] = h & 0xFF
    blk[off + 1] = h >> 8


def edge_blocks(name, rng):
    be, bb, f16s, codes = TYPES[name]
    out = []

    def new(fill=None):
        b = rng.integers(0, 256, size=bb, dtype=np.uint8) if fill is None else np.full(bb, fill, np.uint8)
        for off in f16s:
            set16(b, off, int(rng_f16_finite(rng, 1)[0]))
        return b

    def codes_fill(b, v):
        for lo, hi in codes:
            b[lo:hi] = v

    # all-zero block
    out.append(np.zeros(bb, np.uint8))
    # all code bits set, extreme scales
    for d, m in [(0x7BFF, 0xFBFF), (0xFBFF, 0x7BFF), (0x3C00, 0xBC00), (0x0001, 0x8001)]:
        b = np.full(bb, 0xFF, np.uint8)
        set16(b, f16s[0], d)
        if len(f16s) > 1:
            set16(b, f16s[1], m)
        out.append(b)
    # smallest codes (all code bytes 0), random / extreme scales
    for d in [0x7BFF, 0x83FF, 0xBC00]:
        b = new()
        codes_fill(b, 0x00)
        set16(b, f16s[0], d)
        out.append(b)
    # alternating code patterns
    for pat in [0x0F, 0xF0, 0x55, 0xAA, 0x80, 0x7F] if be == 32 else [0x0F, 0xAA, 0x7F]:
        b = new()
        codes_fill(b, pat)
        out.append(b)
    # every edge f16 value as d, random codes, and as m/dmin (in the same block for the
    # 256-element types, to keep the files small)
    for i, h in enumerate(F16_EDGE):
        b = new()
        set16(b, f16s[0], h)
        if len(f16s) > 1 and be == 256:
            set16(b, f16s[1], F16_EDGE[(i + 5) % len(F16_EDGE)])
        out.append(b)
        if len(f16s) > 1 and be == 32:
            b = new()
            set16(b, f16s[1], h)
            out.append(b)
    # signed zeros in both fields (sign of a zero result: -0 + -0, +0 - -0, ...)
    if len(f16s) > 1:
        for d in (0x0000, 0x8000):
            for m in (0x0000, 0x8000):
                b = new()
                set16(b, f16s[0], d)
                set16(b, f16s[1], m)
                out.append(b)
                if be == 32:  # (K: sc = 0 or q = 0 occur in random codes anyway)
                    b = b.copy()
                    codes_fill(b, 0)
                    out.append(b)
    # exact cancellation: m = -d*q for some codes (gives zeros and tiny results)
    if name in ("Q4_1", "Q5_1"):
        for d, m in [(0x3C00, 0xC700), (0xBC00, 0x4700), (0x3800, 0xC000), (0x1400, 0x9800)]:
            b = new()
            set16(b, 0, d)
            set16(b, 2, m)
            out.append(b)
    # K-quant scale bytes: all 0, all 0xFF, 6-bit edges, random
    if name in K_SCALES:
        lo, hi = K_SCALES[name]
        fills = [0x00, 0xFF, 0x3F, 0xC0, 0x80, 0x7F, 0x01] if name == "Q6_K" else [0x00, 0xFF, 0x3F, 0xC0, 0x0F, 0xF0]
        for f in fills:
            b = new()
            b[lo:hi] = f
            out.append(b)
        if name == "Q6_K":  # int8 scales -128 .. 127 mixed, negative d
            b = new()
            b[lo:hi] = np.array([0x80, 0x7F, 0x00, 0xFF, 0x01, 0x81, 0x40, 0xC0] * 2, np.uint8)
            set16(b, 208, 0xC1A3)
            out.append(b)
        else:  # d = dmin, exact cancellation sc*q == mn for some elements
            b = new()
            set16(b, 0, 0x2E66)
            set16(b, 2, 0x2E66)
            out.append(b)
    # realistic blocks: the reference quantizer on normal data, where it exists
    qt = getattr(QT, name)
    if name in ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"):
        x = (rng.standard_normal(be * 4) * np.array([1e-3, 0.1, 3.0, 1e3]).repeat(be)).astype(np.float32)
        q = gguf.quants.quantize(x.reshape(4, be), qt).reshape(-1)
        out.extend(q.reshape(4, bb))
    return out


def random_blocks(name, rng, n):
    be, bb, f16s, _ = TYPES[name]
    b = rng.integers(0, 256, size=(n, bb), dtype=np.uint8)
    for off in f16s:
        h = rng_f16_finite(rng, n)
        b[:, off] = h & 0xFF
        b[:, off + 1] = h >> 8
    return list(b)


def nonfinite_blocks(name, rng):
    be, bb, f16s, codes = TYPES[name]
    out = []
    for h in F16_NONFINITE if be == 32 else [0x7C00, 0xFE00, 0x7C01]:
        for k, off in enumerate(f16s):
            b = rng.integers(0, 256, size=bb, dtype=np.uint8)
            for o in f16s:
                set16(b, o, int(rng_f16_finite(rng, 1)[0]))
            set16(b, off, h)
            if h == 0x7C00 and k == 0:  # inf times zero codes
                for lo, hi in codes:
                    b[lo:hi] = 0
            out.append(b)
    if len(f16s) > 1:  # inf + -inf, inf - inf
        for d, m in [(0x7C00, 0xFC00), (0x7C00, 0x7C00), (0xFC00, 0x7E00)]:
            b = rng.integers(0, 256, size=bb, dtype=np.uint8)
            set16(b, f16s[0], d)
            set16(b, f16s[1], m)
            out.append(b)
    return out


def header(kind, name, nblocks):
    be, bb, _, _ = TYPES[name]
    return b"QMQF" + struct.pack("<II8sIII", 1, kind, name.encode(), nblocks, bb, be)


def dequant(name, blocks):
    raw = np.concatenate(blocks).astype(np.uint8)
    with np.errstate(all="ignore"):
        y = gguf.quants.dequantize(raw, getattr(QT, name))
    assert y.dtype == np.float32 and y.size == len(blocks) * TYPES[name][0]
    return raw, y.astype("<f4")


def quant_inputs(name, rng):
    """Blocks of f32 for quantize: ties, zeros, one huge value, tiny values, random spread."""
    x = []
    # exact ties: for Q8_0 with max 127 (d = 1, id = 1) x = k + 0.5 ties; for Q4_0 max -8
    t = np.arange(-15.5, 16.5, 1.0, dtype=np.float32)[:32]
    b = t.copy()
    b[0] = 127.0 if name == "Q8_0" else -8.0
    x.append(b)
    b = (t / 2).astype(np.float32)
    b[5] = -127.0 if name == "Q8_0" else 8.0
    x.append(b)
    x.append(np.zeros(32, np.float32))  # all zero
    b = np.zeros(32, np.float32)
    b[7] = -0.0
    b[9] = 3.0
    x.append(b)
    b = (rng.standard_normal(32)).astype(np.float32)  # one huge value (d overflows f16)
    b[11] = 3.0e38
    x.append(b)
    b = (rng.standard_normal(32)).astype(np.float32)
    b[3] = -1.0e6
    x.append(b)
    x.append((rng.standard_normal(32) * 1e-6).astype(np.float32))  # d subnormal in f16
    x.append((rng.standard_normal(32) * 1e-9).astype(np.float32))  # d underflows f16
    b = np.full(32, 2.5, np.float32)  # equal magnitudes of both signs: first one wins
    b[::2] = -2.5
    x.append(b)
    b = b.copy()
    b[0] = 2.5
    x.append(b)
    # random spread: sign, exponent and mantissa all random
    for _ in range(22):
        e = rng.integers(-20, 21, size=32)
        b = (rng.uniform(1, 2, 32) * np.exp2(e) * rng.choice([-1, 1], 32)).astype(np.float32)
        x.append(b)
    return np.concatenate(x).astype("<f4")


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "quant"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for i, name in enumerate(TYPES):
        rng = np.random.default_rng(20240611 + i)
        be = TYPES[name][0]
        blocks = edge_blocks(name, rng) + random_blocks(name, rng, 24 if be == 32 else 6)
        raw, y = dequant(name, blocks)
        path = os.path.join(args.out, f"dequant_{name.lower()}.bin")
        with open(path, "wb") as f:
            f.write(header(1, name, len(blocks)) + raw.tobytes() + y.tobytes())
        total += os.path.getsize(path)

        nf = nonfinite_blocks(name, rng)
        raw, y = dequant(name, nf)
        path = os.path.join(args.out, f"nonfinite_{name.lower()}.bin")
        with open(path, "wb") as f:
            f.write(header(3, name, len(nf)) + raw.tobytes() + y.tobytes())
        total += os.path.getsize(path)

        if name in ("Q8_0", "Q4_0"):
            x = quant_inputs(name, rng)
            with np.errstate(all="ignore"):
                q = gguf.quants.quantize(x.reshape(-1, 32), getattr(QT, name)).reshape(-1)
            path = os.path.join(args.out, f"quantize_{name.lower()}.bin")
            with open(path, "wb") as f:
                f.write(header(2, name, x.size // 32) + x.tobytes() + q.astype(np.uint8).tobytes())
            total += os.path.getsize(path)
        print(f"{name}: {len(blocks)} blocks + {len(nf)} non-finite")
    print(f"wrote {args.out}: {total} bytes")


if __name__ == "__main__":
    main()
