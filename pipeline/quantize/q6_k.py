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
to stay in the CPU cache and their arrays are allocated once per call.
"""

from __future__ import annotations

import numpy as np

from pipeline.errors import PrepError
from pipeline.quantize.blocks import first_largest_magnitude

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
_N_CANDIDATES = _NUMERATORS.shape[0]
# For |numerator| <= 31.4, |x * iscale| <= 31.4 plus two roundings' ulps < 31.5 (|x| never exceeds the
# largest), so np.rint already lands in -31..31: those 4 of the 19 candidates skip the clip.
_NEEDS_CLIP = [bool(abs(n) > np.float32(31.45)) for n in _NUMERATORS[:, 0]]


class _Buffers:
    """Arrays for chunks of up to `n_sub` sub-blocks, position-major (16, n), reused chunk after chunk:
    a fresh array of this size costs more in page faults than the operation that fills it."""

    def __init__(self, n_sub: int) -> None:
        self.x = np.empty((SUB, n_sub), dtype=np.float32)
        self.weights = np.empty_like(self.x)
        self.weighted_x = np.empty_like(self.x)
        self.terms = np.empty((2, SUB, n_sub), dtype=np.float32)
        self.iscales = np.empty((_N_CANDIDATES, n_sub), dtype=np.float32)
        self.sums = np.empty((_N_CANDIDATES, 2, n_sub), dtype=np.float32)
        self.scales = np.empty((_N_CANDIDATES, n_sub), dtype=np.float32)
        self.bests = np.empty_like(self.scales)
        self.squares = np.empty_like(self.scales)


class _Search:
    """ggml's make_qx_quants(16, 32, rmse_type 1) on every column of a position-major (16, n) chunk."""

    def __init__(self, buffers: _Buffers, sub_blocks: np.ndarray) -> None:
        """`sub_blocks`: (n, 16) values, copied position-major into the buffers."""
        n = sub_blocks.shape[0]
        self.x = buffers.x[:, :n]
        np.copyto(self.x, sub_blocks.T)
        self.weights = np.multiply(self.x, self.x, out=buffers.weights[:, :n])
        # The reference evaluates w*x[i]*l as (w*x[i])*l.
        self.weighted_x = np.multiply(self.weights, self.x, out=buffers.weighted_x[:, :n])
        self.terms = buffers.terms[:, :, :n]
        self.iscales = buffers.iscales[:, :n]
        self.sums = buffers.sums[:, :, :n]
        self.scales = buffers.scales[:, :n]
        self.bests = buffers.bests[:, :n]
        self.squares = buffers.squares[:, :n]

    def levels_for(self, iscale: np.ndarray, clip: bool = True) -> np.ndarray:
        """Levels -32..31 as floats, in terms[0]. |iscale * x| <= 32.9 here, where np.rint is nearest_int."""
        levels = np.multiply(self.x, iscale, out=self.terms[0])
        np.rint(levels, out=levels)
        return np.clip(levels, -NMAX, NMAX - 1, out=levels) if clip else levels

    def sums_for(self, iscale: np.ndarray, out: np.ndarray, clip: bool) -> None:
        """out[0] = sum(w*x*l), out[1] = sum(w*l*l) for the levels of `iscale`, each added in position
        order from +0.0 (which also hides the sign of the zero levels np.rint leaves on small negative
        values)."""
        levels = self.levels_for(iscale, clip)
        np.multiply(self.weights, levels, out=self.terms[1])
        self.terms[1] *= levels
        levels *= self.weighted_x
        np.add.reduce(self.terms, axis=1, initial=_ZERO, out=out)

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        """The best scale of each sub-block and its levels (-32..31 as floats, a view of terms[0];
        -32 for an all-zero sub-block, which the reference stores as 0 with scale 0)."""
        signed_max = first_largest_magnitude(self.x)
        largest = np.abs(signed_max)
        zero = largest < _EPS
        np.divide(_NUMERATORS, np.where(zero, np.float32(1), signed_max), out=self.iscales)
        for iscale, out, clip in zip(self.iscales, self.sums, _NEEDS_CLIP, strict=True):
            self.sums_for(iscale, out, clip)
        sum_lx, sum_l2 = self.sums[:, 0], self.sums[:, 1]
        scales, bests, squares = self.scales, self.bests, self.squares
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            np.divide(sum_lx, sum_l2, out=scales)
            scales[0, sum_l2[0] == 0] = 0
            np.multiply(scales, sum_lx, out=bests)
            np.multiply(sum_lx, sum_lx, out=squares)
            # The candidates in the reference's order, the first one being its starting point. It also
            # requires suml2 > 0, which always holds for a sub-block that is not all zero (the largest
            # value gets a level of at least 31 and a weight > 0) and otherwise fails like the comparison.
            best = bests[0].copy()
            choice = np.zeros(best.size, dtype=np.intp)
            threshold = np.empty_like(best)
            better = np.empty(best.size, dtype=bool)
            for k in range(1, _N_CANDIDATES):
                np.multiply(best, sum_l2[k], out=threshold)
                np.greater(squares[k], threshold, out=better)
                np.putmask(best, better, bests[k])
                np.putmask(choice, better, k)
        columns = np.arange(best.size)
        scale = scales[choice, columns]
        levels = self.levels_for(self.iscales[choice, columns])
        scale[zero] = 0
        levels[:, zero] = -NMAX
        return scale, levels


def _quantize_chunk(rows: np.ndarray, buffers: _Buffers, first_block: int) -> np.ndarray:
    """(n_blocks, 256) float32 -> (n_blocks, 210) uint8 Q6_K blocks; `first_block` numbers them in errors."""
    n_blocks = rows.shape[0]
    search = _Search(buffers, rows.reshape(n_blocks * SUB, SUB))
    sub_scale, levels = search.run()

    max_scale = first_largest_magnitude(np.ascontiguousarray(sub_scale.reshape(n_blocks, SUB).T))
    max_abs_scale = np.abs(max_scale)
    empty = max_abs_scale < _EPS
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = np.float32(-128) / np.where(empty, np.float32(1), max_scale)
        d16 = (np.float32(1) / iscale).astype(np.float16)
    unusable = ~empty & ~np.isfinite(d16)
    if unusable.any():
        block = int(np.flatnonzero(unusable)[0])
        raise PrepError(
            f"Q6_K: super-block {first_block + block} (largest magnitude {np.abs(rows[block]).max():.3g}) "
            "needs a scale beyond float16; llama.cpp refuses such a tensor too",
            hint="check the source weights for overflowed or corrupt values",
        )
    # |iscale * scale| <= 128: np.rint is nearest_int.
    q_scales = np.minimum(127, np.rint(np.repeat(iscale, SUB) * sub_scale)).astype(np.int8)
    d = np.repeat(d16.astype(np.float32), SUB) * q_scales.astype(np.float32)

    # Sub-blocks with d != 0 are quantized again against it (|x / d| stays far below 2^22, where np.rint is
    # nearest_int); the others keep the searched levels.
    kept = np.flatnonzero(d == 0)
    requant = search.terms[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(search.x, d, out=requant)
    np.rint(requant, out=requant)
    np.clip(requant, -32, 31, out=requant)
    requant[:, kept] = levels[:, kept]
    requant += np.float32(32)
    final = np.ascontiguousarray(requant.astype(np.uint8).T).reshape(n_blocks, 2, 4, 32)  # halves, quarters

    low = final & 0x0F
    high = final >> 4
    out = np.empty((n_blocks, BLOCK_BYTES), dtype=np.uint8)
    out[:, :128] = (low[:, :, 0:2] | (low[:, :, 2:4] << 4)).reshape(n_blocks, 128)
    out[:, 128:192] = (
        high[:, :, 0] | (high[:, :, 1] << 2) | (high[:, :, 2] << 4) | (high[:, :, 3] << 6)
    ).reshape(n_blocks, 64)
    out[:, 192:208] = q_scales.view(np.uint8).reshape(n_blocks, SUB)
    out[:, 208:210] = d16.view(np.uint8).reshape(n_blocks, 2)
    out[empty] = 0
    return out


def quantize_q6_k(data: np.ndarray) -> np.ndarray:
    """Quantizes float32 values (a multiple of 256 in total) to Q6_K blocks; returns the raw bytes."""
    x = np.asarray(data, dtype=np.float32).reshape(-1, QK_K)
    out = np.empty((x.shape[0], BLOCK_BYTES), dtype=np.uint8)
    buffers = _Buffers(min(x.shape[0], _CHUNK_BLOCKS) * SUB)
    for start in range(0, x.shape[0], _CHUNK_BLOCKS):
        out[start : start + _CHUNK_BLOCKS] = _quantize_chunk(x[start : start + _CHUNK_BLOCKS], buffers, start)
    return out.reshape(-1)
