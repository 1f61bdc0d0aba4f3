"""Q8_0, Q4_0, Q5_0, Q4_1 and Q5_1 in numpy, bit-identical to ggml's reference quantizers, with fewer passes.

gguf.quants reduces every 32-value block along the short last axis, which numpy runs slowly, and rounds
in eight array passes. Here the values are first laid out block-position-major (32, n_blocks), so every
per-block reduction runs over long contiguous rows, and Q8_0's round-half-away-from-zero is one add of
copysign(0.49999997, x) and a truncating cast (the exact form of roundf; adding 0.5 would round
0.49999997 up). The float32 operations that decide the bytes are the reference's, in its order. These
are the 32-value block types; gguf.quants also differs from ggml on blocks whose extreme value is a zero
of either sign, where ggml keeps the first one it meets.

A slab goes through in chunks whose arrays are allocated once and reused: a fresh array of a few hundred
kB costs more in page faults than the arithmetic that fills it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

BLOCK = 32
_CHUNK_BLOCKS = 2048  # a (32, n) float32 chunk is 256 KiB
_JUST_BELOW_HALF = np.nextafter(np.float32(0.5), np.float32(0))


class _Chunk:
    """Reused arrays for chunks of up to `n` blocks; `load` fills the block-major values of one chunk."""

    def __init__(self, n: int, source_dtype: np.dtype) -> None:
        self.source = None if source_dtype == np.float32 else np.empty((BLOCK, n), dtype=source_dtype)
        self.values = np.empty((BLOCK, n), dtype=np.float32)
        self.scratch = np.empty((BLOCK, n), dtype=np.float32)
        self.codes = np.empty((BLOCK, n), dtype=np.int8)

    def load(self, blocks: np.ndarray) -> np.ndarray:
        """(32, n) float32 view of `blocks` (n, 32): transposed in the source dtype (half the bytes to
        scatter for float16), then converted."""
        n = blocks.shape[0]
        if self.source is None:
            np.copyto(self.values[:, :n], blocks.T)
        else:
            np.copyto(self.source[:, :n], blocks.T)
            np.copyto(self.values[:, :n], self.source[:, :n])
        return self.values[:, :n]


QuantizeChunk = Callable[[np.ndarray, _Chunk, np.ndarray], None]


def _chunked(rows: np.ndarray, block_bytes: int, quantize_chunk: QuantizeChunk) -> np.ndarray:
    blocks = rows.reshape(-1, BLOCK)
    out = np.empty((blocks.shape[0], block_bytes), dtype=np.uint8)
    chunk = _Chunk(min(blocks.shape[0], _CHUNK_BLOCKS), blocks.dtype)
    for start in range(0, blocks.shape[0], _CHUNK_BLOCKS):
        end = start + _CHUNK_BLOCKS
        quantize_chunk(blocks[start:end], chunk, out[start:end])
    return out.reshape(-1)


def _inverse(d: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)


def _put_scale(out: np.ndarray, d: np.ndarray) -> None:
    out[:, :2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)


def _q8_0_chunk(blocks: np.ndarray, chunk: _Chunk, out: np.ndarray) -> None:
    x = chunk.load(blocks)
    magnitude = np.abs(x, out=chunk.scratch[:, : x.shape[1]])
    d = magnitude.max(axis=0) / np.float32(127)
    x *= _inverse(d)
    x += np.copysign(_JUST_BELOW_HALF, x, out=magnitude)
    codes = chunk.codes[:, : x.shape[1]]
    np.copyto(codes, x, casting="unsafe")
    _put_scale(out, d)
    out[:, 2:] = codes.view(np.uint8).T


def quantize_q8_0(rows: np.ndarray) -> np.ndarray:
    """float16/float32 rows (length a multiple of 32) -> Q8_0 bytes, flat uint8."""
    return _chunked(rows, 2 + BLOCK, _q8_0_chunk)


def first_largest_magnitude(x: np.ndarray) -> np.ndarray:
    """Per block (column), the value of largest magnitude, the first one on ties, +0.0 for an all-zero
    block: ggml starts from +0.0 and replaces it only by a strictly larger magnitude (gguf.quants would
    take a leading -0.0 and so write the scale's sign bit differently). Q6_K picks its sub-block and
    super-block scales the same way."""
    high, low = x.max(axis=0), x.min(axis=0)
    largest = np.where(high >= -low, high, low)
    ties = np.flatnonzero((high == -low) & (high != 0))  # +v and -v both present: take the first
    if ties.size:
        columns = x[:, ties]
        first = np.argmax(np.abs(columns) == high[ties], axis=0)
        largest[ties] = columns[first, np.arange(ties.size)]
    largest[largest == 0] = 0.0
    return largest


def _levels(blocks: np.ndarray, chunk: _Chunk, out: np.ndarray, n_levels: int) -> np.ndarray:
    """Scale and unsigned levels (0..n_levels-1, as uint8 (32, n)) of Q4_0 / Q5_0; writes the scale."""
    x = chunk.load(blocks)
    half = np.float32(n_levels // 2)
    d = first_largest_magnitude(x) / -half
    x *= _inverse(d)
    x += half + np.float32(0.5)
    codes = chunk.codes[:, : x.shape[1]]
    np.copyto(codes, x, casting="unsafe")
    levels = codes.view(np.uint8)
    np.minimum(levels, n_levels - 1, out=levels)
    _put_scale(out, d)
    return levels


def _low_nibbles(levels: np.ndarray) -> np.ndarray:
    """(16, n): value j's low 4 bits in the low nibble of byte j, value j + 16's in its high nibble."""
    low = levels[: BLOCK // 2] & 0x0F
    low |= (levels[BLOCK // 2 :] & 0x0F) << 4
    return low


def _q4_0_chunk(blocks: np.ndarray, chunk: _Chunk, out: np.ndarray) -> None:
    out[:, 2:] = _low_nibbles(_levels(blocks, chunk, out, 16)).T


def quantize_q4_0(rows: np.ndarray) -> np.ndarray:
    """float16/float32 rows (length a multiple of 32) -> Q4_0 bytes, flat uint8."""
    return _chunked(rows, 2 + BLOCK // 2, _q4_0_chunk)


def _q5_0_chunk(blocks: np.ndarray, chunk: _Chunk, out: np.ndarray) -> None:
    levels = _levels(blocks, chunk, out, 32)
    # Fifth bits: bit j of a little-endian uint32 is value j's, for the 32 values in order.
    out[:, 2:6] = np.packbits(levels >> 4, axis=0, bitorder="little").T
    out[:, 6:] = _low_nibbles(levels).T


def quantize_q5_0(rows: np.ndarray) -> np.ndarray:
    """float16/float32 rows (length a multiple of 32) -> Q5_0 bytes, flat uint8."""
    return _chunked(rows, 2 + 4 + BLOCK // 2, _q5_0_chunk)


def _first_min_max(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per block (column), the smallest and largest value as ggml finds them: a later value replaces the one
    kept only if strictly smaller (larger), so a zero extreme has the sign of the block's first zero, where
    np.min and np.max may return either."""
    low, high = x.min(axis=0), x.max(axis=0)
    for extreme in (low, high):
        zeros = np.flatnonzero(extreme == 0)
        if zeros.size:
            columns = x[:, zeros]
            extreme[zeros] = columns[np.argmax(columns == 0, axis=0), np.arange(zeros.size)]
    return low, high


def _offset_levels(blocks: np.ndarray, chunk: _Chunk, out: np.ndarray, n_levels: int) -> np.ndarray:
    """Unsigned levels (uint8 (32, n), not clipped) of Q4_1 / Q5_1: round((x - min) / d) with
    d = (max - min) / (n_levels - 1); writes the scale and the minimum."""
    x = chunk.load(blocks)
    low, high = _first_min_max(x)
    d = (high - low) / np.float32(n_levels - 1)
    x -= low
    x *= _inverse(d)
    x += np.float32(0.5)  # then truncated: the reference's (int8_t)(v + 0.5f) on values >= 0
    codes = chunk.codes[:, : x.shape[1]]
    np.copyto(codes, x, casting="unsafe")
    _put_scale(out, d)
    out[:, 2:4] = low.astype(np.float16).view(np.uint8).reshape(-1, 2)
    return codes.view(np.uint8)


def _q4_1_chunk(blocks: np.ndarray, chunk: _Chunk, out: np.ndarray) -> None:
    levels = _offset_levels(blocks, chunk, out, 16)
    out[:, 4:] = _low_nibbles(np.minimum(levels, 15, out=levels)).T


def quantize_q4_1(rows: np.ndarray) -> np.ndarray:
    """float16/float32 rows (length a multiple of 32) -> Q4_1 bytes, flat uint8."""
    return _chunked(rows, 2 + 2 + BLOCK // 2, _q4_1_chunk)


def _q5_1_chunk(blocks: np.ndarray, chunk: _Chunk, out: np.ndarray) -> None:
    levels = _offset_levels(blocks, chunk, out, 32)
    out[:, 4:8] = np.packbits((levels >> 4) & 1, axis=0, bitorder="little").T
    out[:, 8:] = _low_nibbles(levels).T


def quantize_q5_1(rows: np.ndarray) -> np.ndarray:
    """float16/float32 rows (length a multiple of 32) -> Q5_1 bytes, flat uint8."""
    return _chunked(rows, 2 + 2 + 4 + BLOCK // 2, _q5_1_chunk)
