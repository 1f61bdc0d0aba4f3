"""Q8_0, Q4_0 and Q5_0 in numpy, bit-identical to ggml's reference quantizers, with fewer passes.

gguf.quants reduces every 32-value block along the short last axis, which numpy runs slowly, and rounds
in eight array passes. Here a slab is first laid out block-position-major (32, n_blocks), so every
per-block reduction runs over long contiguous rows, and Q8_0's round-half-away-from-zero is one add of
copysign(0.49999997, x) and a truncating cast (the exact form of roundf; adding 0.5 would round
0.49999997 up). The float32 operations that decide the bytes are the reference's, in its order. These
are the types builds use most; the others go through gguf.quants.
"""

from __future__ import annotations

import numpy as np

BLOCK = 32
_JUST_BELOW_HALF = np.nextafter(np.float32(0.5), np.float32(0))


def _block_major(rows: np.ndarray) -> np.ndarray:
    """(32, n_blocks) float32 copy of the values: transposed in the source dtype (half the bytes to
    scatter for float16), then converted."""
    return np.ascontiguousarray(rows.reshape(-1, BLOCK).T).astype(np.float32, copy=False)


def _inverse(d: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)


def _pack(d: np.ndarray, payload_t: np.ndarray) -> np.ndarray:
    """Blocks of [fp16 scale][payload bytes]; `payload_t` is (bytes per block, n_blocks)."""
    out = np.empty((d.size, 2 + payload_t.shape[0]), dtype=np.uint8)
    out[:, :2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    out[:, 2:] = payload_t.T
    return out.reshape(-1)


def quantize_q8_0(rows: np.ndarray) -> np.ndarray:
    """float16/float32 rows (length a multiple of 32) -> Q8_0 bytes, flat uint8."""
    x = _block_major(rows)
    d = np.abs(x).max(axis=0) / np.float32(127)
    x *= _inverse(d)
    x += np.copysign(_JUST_BELOW_HALF, x)
    return _pack(d, x.astype(np.int8).view(np.uint8))


def _first_largest_magnitude(x: np.ndarray) -> np.ndarray:
    """Per block (column), the value of largest magnitude, the first one on ties, +0.0 for an all-zero
    block: ggml starts from +0.0 and replaces it only by a strictly larger magnitude (gguf.quants would
    take a leading -0.0 and so write the scale's sign bit differently)."""
    high, low = x.max(axis=0), x.min(axis=0)
    largest = np.where(high >= -low, high, low)
    for column in np.flatnonzero((high == -low) & (high != 0)):  # +v and -v both present: rare
        values = x[:, column]
        largest[column] = values[np.flatnonzero(np.abs(values) == high[column])[0]]
    largest[largest == 0] = 0.0
    return largest


def quantize_q4_0(rows: np.ndarray) -> np.ndarray:
    """float16/float32 rows (length a multiple of 32) -> Q4_0 bytes, flat uint8."""
    x = _block_major(rows)
    d = _first_largest_magnitude(x) / np.float32(-8)
    x *= _inverse(d)
    x += np.float32(8.5)
    q = np.minimum(x.astype(np.int8).view(np.uint8), 15)
    return _pack(d, q[: BLOCK // 2] | (q[BLOCK // 2 :] << 4))


def quantize_q5_0(rows: np.ndarray) -> np.ndarray:
    """float16/float32 rows (length a multiple of 32) -> Q5_0 bytes, flat uint8."""
    x = _block_major(rows)
    d = _first_largest_magnitude(x) / np.float32(-16)
    x *= _inverse(d)
    x += np.float32(16.5)
    q = np.minimum(x.astype(np.int8).view(np.uint8), 31)
    low = q[: BLOCK // 2] & 0x0F | ((q[BLOCK // 2 :] & 0x0F) << 4)
    # Fifth bits: bit j of a little-endian uint32 is value j's, for the 32 values in order.
    high_bits = np.packbits((q >> 4).astype(np.uint8), axis=0, bitorder="little")
    return _pack(d, np.concatenate([high_bits, low]))
