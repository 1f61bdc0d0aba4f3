"""Q6_K quantization in numpy, bit-identical to ggml's reference quantizer (no importance matrix).

llama.cpp gives the output tensor Q6_K in Q4_0/Q4_1/Q5_0/Q5_1 files, and gguf.quants only dequantizes
Q6_K. Every float operation runs in float32 in the reference's order (sums are accumulated element by
element, starting from +0.0), which is what makes the bytes identical.

A super-block holds 256 values in 16 sub-blocks of 16: per sub-block a scale is searched over 19
candidates (weighted least squares, weights x^2), the scales are quantized to int8 against one fp16
super-block scale, and the 6-bit values are packed as 4 low bits (ql) and 2 high bits (qh).

Speed: the search runs on all sub-blocks of a chunk at once, laid out position-major (16, n), so each
candidate is a handful of whole-array operations and the in-order sums are reductions over axis 0
(numpy adds those row by row; only reductions along the contiguous axis are pairwise). Chunks are sized
to stay in the CPU cache.
"""

from __future__ import annotations

import numpy as np

from pipeline.errors import PrepError

QK_K = 256
SUB = 16
NMAX = 32
BLOCK_BYTES = QK_K // 2 + QK_K // 4 + QK_K // 16 + 2
_EPS = np.float32(1e-15)
_ZERO = np.float32(0)
_CHUNK_BLOCKS = 256  # 4,096 sub-blocks: a (16, n) float32 array is 256 KiB
# The reference's candidates for the inverse scale are -nmax / max first, then -(nmax + 0.1 * step) / max
# for step -9..9 except 0, each numerator rounded to float32 term by term as in C.
_NUMERATORS = np.array(
    [np.float32(-NMAX)]
    + [-(np.float32(NMAX) + np.float32(0.1) * np.float32(step)) for step in range(-9, 10) if step != 0],
    dtype=np.float32,
)[:, None]
_ROUNDING_BIAS = np.float32(12582912)  # 1.5 * 2^23


def _nearest_int(values: np.ndarray) -> np.ndarray:
    """ggml's nearest_int exactly: add 1.5 * 2^23 in float32 and read the low mantissa bits (half to
    even; NaN gives 0; out of range values wrap as they do in C)."""
    biased = (values.astype(np.float32) + _ROUNDING_BIAS).view(np.int32)
    return (biased & 0x007FFFFF) - 0x00400000


def _first_largest(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of (16, n): the first value of largest magnitude and that magnitude, as the reference
    picks them (a later value replaces the one kept only if strictly larger)."""
    high, low = x.max(axis=0), x.min(axis=0)
    signed_max = np.where(high >= -low, high, low)
    ties = np.flatnonzero((high == -low) & (high != 0))  # +v and -v both present: take the first
    if ties.size:
        columns = x[:, ties]
        first = np.argmax(np.abs(columns) == high[ties], axis=0)
        signed_max[ties] = columns[first, np.arange(ties.size)]
    return signed_max, np.abs(signed_max)


class _Search:
    """Buffers for the scale search on one chunk of position-major sub-blocks, shape (16, n)."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.weights = x * x
        self.weighted_x = self.weights * x  # the reference evaluates w*x[i]*l as (w*x[i])*l
        self.levels = np.empty_like(x)
        self.terms = np.empty((2, *x.shape), dtype=np.float32)

    def levels_for(self, iscale: np.ndarray) -> np.ndarray:
        # |iscale * x| <= 32.9 here, where np.rint is nearest_int.
        np.multiply(self.x, iscale, out=self.levels)
        np.rint(self.levels, out=self.levels)
        return np.clip(self.levels, -NMAX, NMAX - 1, out=self.levels)

    def sums(self, iscale: np.ndarray, out: np.ndarray) -> None:
        """out[0] = sum(w*x*l), out[1] = sum(w*l*l) for the levels of `iscale`, each added in position
        order from +0.0 (which also hides the sign of the zero levels np.rint leaves on small negative
        values)."""
        levels = self.levels_for(iscale)
        np.multiply(self.weighted_x, levels, out=self.terms[0])
        np.multiply(self.weights, levels, out=self.terms[1])
        self.terms[1] *= levels
        np.add.reduce(self.terms, axis=1, initial=_ZERO, out=out)


def _sub_block_scales(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ggml's make_qx_quants(16, 32, rmse_type 1) on every column of the position-major (16, n) chunk:
    the best scale and the levels (0..63) that go with it."""
    signed_max, largest = _first_largest(x)
    zero = largest < _EPS
    n = x.shape[1]
    iscales = np.empty((len(_NUMERATORS), n), dtype=np.float32)
    np.divide(_NUMERATORS, np.where(zero, np.float32(1), signed_max), out=iscales)
    search = _Search(x)
    sums = np.empty((len(_NUMERATORS), 2, n), dtype=np.float32)
    for iscale, out in zip(iscales, sums, strict=True):
        search.sums(iscale, out)
    sum_lx, sum_l2 = sums[:, 0], sums[:, 1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scales = sum_lx / sum_l2
        scales[0] = np.where(sum_l2[0] != 0, scales[0], _ZERO)
        bests = scales * sum_lx
        squares = sum_lx * sum_lx
        # The candidates in the reference's order, the first one being its starting point. It also
        # requires suml2 > 0, which always holds for a sub-block that is not all zero (the largest value
        # gets a level of at least 31 and a weight > 0) and otherwise fails like the comparison (NaN).
        best = bests[0].copy()
        choice = np.zeros(n, dtype=np.intp)
        for k in range(1, len(_NUMERATORS)):
            better = squares[k] > best * sum_l2[k]
            np.putmask(best, better, bests[k])
            np.putmask(choice, better, k)
    columns = np.arange(n)
    scale = scales[choice, columns]
    levels = search.levels_for(iscales[choice, columns]) + np.float32(NMAX)
    levels[:, zero] = 0
    scale[zero] = 0
    return scale, levels.astype(np.uint8)


def _quantize_chunk(x: np.ndarray, first_block: int) -> np.ndarray:
    """(n_blocks, 256) float32 -> (n_blocks, 210) uint8 Q6_K blocks; `first_block` numbers them in errors."""
    n_blocks = x.shape[0]
    sub_scales, levels_t = _sub_block_scales(np.ascontiguousarray(x.reshape(-1, SUB).T))
    sub_scales = sub_scales.reshape(n_blocks, SUB)
    levels = levels_t.T.reshape(n_blocks, SUB, SUB)

    max_scale, max_abs_scale = _first_largest(sub_scales.T)
    empty = max_abs_scale < _EPS
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = np.float32(-128) / np.where(empty, np.float32(1), max_scale)
        d16 = (np.float32(1) / iscale).astype(np.float16)
        q_scales = np.minimum(127, _nearest_int(iscale[:, None] * sub_scales)).astype(np.int8)
        d = d16.astype(np.float32)[:, None] * q_scales.astype(np.float32)
        requant = _nearest_int(x.reshape(n_blocks, SUB, SUB) / d[:, :, None])
    unusable = ~empty & ~np.isfinite(d16)
    if unusable.any():
        block = int(np.flatnonzero(unusable)[0])
        raise PrepError(
            f"Q6_K: super-block {first_block + block} (largest magnitude {np.abs(x[block]).max():.3g}) "
            "needs a scale beyond float16; llama.cpp refuses such a tensor too",
            hint="check the source weights for overflowed or corrupt values",
        )
    has_d = d != 0
    np.clip(requant, -32, 31, out=requant)
    requant += 32
    levels = np.where(has_d[:, :, None], requant.astype(np.uint8), levels)
    levels = levels.reshape(n_blocks, 2, 4, 32)  # two halves of 128, four quarters of 32

    low = levels & 0x0F
    high = levels >> 4
    out = np.empty((n_blocks, BLOCK_BYTES), dtype=np.uint8)
    out[:, :128] = (low[:, :, 0:2] | (low[:, :, 2:4] << 4)).reshape(n_blocks, 128)
    out[:, 128:192] = (
        high[:, :, 0] | (high[:, :, 1] << 2) | (high[:, :, 2] << 4) | (high[:, :, 3] << 6)
    ).reshape(n_blocks, 64)
    out[:, 192:208] = q_scales.view(np.uint8)
    out[:, 208:210] = d16.view(np.uint8).reshape(n_blocks, 2)
    out[empty] = 0
    return out


def quantize_q6_k(data: np.ndarray) -> np.ndarray:
    """Quantizes float32 values (a multiple of 256 in total) to Q6_K blocks; returns the raw bytes."""
    x = np.asarray(data, dtype=np.float32).reshape(-1, QK_K)
    out = np.empty((x.shape[0], BLOCK_BYTES), dtype=np.uint8)
    for start in range(0, x.shape[0], _CHUNK_BLOCKS):
        out[start : start + _CHUNK_BLOCKS] = _quantize_chunk(x[start : start + _CHUNK_BLOCKS], start)
    return out.reshape(-1)
