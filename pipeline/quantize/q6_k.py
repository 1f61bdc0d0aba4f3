"""Q6_K quantization in numpy, bit-identical to ggml's reference quantizer (no importance matrix).

llama.cpp gives the output tensor Q6_K in Q4_0/Q4_1/Q5_0/Q5_1 files, and gguf.quants only dequantizes
Q6_K. Every float operation runs in float32 in the reference's order (sums are accumulated element by
element), which is what makes the bytes identical.

A super-block holds 256 values in 16 sub-blocks of 16: per sub-block a scale is searched over 19
candidates (weighted least squares, weights x^2), the scales are quantized to int8 against one fp16
super-block scale, and the 6-bit values are packed as 4 low bits (ql) and 2 high bits (qh).
"""

from __future__ import annotations

import numpy as np

QK_K = 256
SUB = 16
NMAX = 32
_EPS = np.float32(1e-15)
BLOCK_BYTES = QK_K // 2 + QK_K // 4 + QK_K // 16 + 2


def _nearest(values: np.ndarray) -> np.ndarray:
    # The reference rounds half to even (it adds 1.5 * 2^23); np.rint does the same.
    return np.rint(values).astype(np.int32)


def _sub_block_scales(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 16-value sub-block: best scale and levels (0..63); x is position-major, shape (16, n)."""
    n = x.shape[1]
    magnitude = np.abs(x)
    signed_max = x[0].copy()
    largest = magnitude[0].copy()
    for i in range(1, SUB):  # the first value of largest magnitude, as the reference picks it
        np.copyto(signed_max, x[i], where=magnitude[i] > largest)
        np.maximum(largest, magnitude[i], out=largest)
    zero = largest < _EPS
    safe_max = np.where(zero, np.float32(1), signed_max)
    weights = x * x
    weighted_x = weights * x  # the reference evaluates w*x[i]*l as (w*x[i])*l

    def levels_for(iscale: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(iscale * x), -NMAX, NMAX - 1)

    def sums(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sumlx = np.zeros(n, dtype=np.float32)
        suml2 = np.zeros(n, dtype=np.float32)
        for i in range(SUB):  # element by element, in the reference's order
            sumlx += weighted_x[i] * levels[i]
            suml2 += weights[i] * levels[i] * levels[i]
        return sumlx, suml2

    levels = levels_for(np.float32(-NMAX) / safe_max)
    sumlx, suml2 = sums(levels)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(suml2 != 0, sumlx / suml2, np.float32(0)).astype(np.float32)
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = (-(np.float32(NMAX) + np.float32(0.1) * np.float32(step)) / safe_max).astype(np.float32)
        candidate = levels_for(iscale)
        cand_lx, cand_l2 = sums(candidate)
        better = (cand_l2 > 0) & (cand_lx * cand_lx > best * cand_l2)
        if better.any():
            np.copyto(levels, candidate, where=better)
            with np.errstate(divide="ignore", invalid="ignore"):
                new_scale = (cand_lx / cand_l2).astype(np.float32)
            scale = np.where(better, new_scale, scale)
            best = np.where(better, scale * cand_lx, best)
    scale = np.where(zero, np.float32(0), scale)
    np.copyto(levels, np.float32(-NMAX), where=zero)
    return scale, (levels + NMAX).astype(np.uint8)


def quantize_q6_k(data: np.ndarray) -> np.ndarray:
    """Quantizes float32 values (a multiple of 256 in total) to Q6_K blocks; returns the raw bytes."""
    x = np.ascontiguousarray(data, dtype=np.float32).reshape(-1, QK_K)
    n_blocks = x.shape[0]
    sub_scales, levels_t = _sub_block_scales(np.ascontiguousarray(x.reshape(-1, SUB).T))
    sub_scales = sub_scales.reshape(n_blocks, SUB)
    levels = np.ascontiguousarray(levels_t.T).reshape(n_blocks, QK_K)

    arg = np.argmax(np.abs(sub_scales), axis=1)
    max_scale = sub_scales[np.arange(n_blocks), arg]
    empty = np.abs(max_scale) < _EPS
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = np.where(empty, np.float32(0), np.float32(-128) / np.where(empty, 1, max_scale))
        iscale = iscale.astype(np.float32)
        d16 = np.where(empty, np.float32(0), np.float32(1) / np.where(empty, 1, iscale)).astype(np.float16)
    q_scales = np.minimum(127, _nearest(iscale[:, None] * sub_scales)).astype(np.int8)

    d = d16.astype(np.float32)[:, None] * q_scales.astype(np.float32)
    has_d = d != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        requant = np.clip(
            _nearest(x.reshape(n_blocks, SUB, SUB) / np.where(has_d, d, 1)[:, :, None]), -32, 31
        )
    levels = np.where(has_d[:, :, None], (requant + 32).astype(np.uint8), levels.reshape(n_blocks, SUB, SUB))
    levels = levels.reshape(n_blocks, 2, 4, 32)  # two halves of 128, four quarters of 32

    ql = (levels[:, :, 0:2] & 0x0F) | ((levels[:, :, 2:4] & 0x0F) << 4)  # (n, 2, 2, 32)
    qh = (
        (levels[:, :, 0] >> 4)
        | ((levels[:, :, 1] >> 4) << 2)
        | ((levels[:, :, 2] >> 4) << 4)
        | ((levels[:, :, 3] >> 4) << 6)
    )  # (n, 2, 32)
    q_scales_bytes = q_scales.view(np.uint8)
    d_bytes = np.where(empty, np.float16(0), d16).astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    out = np.concatenate(
        [ql.reshape(n_blocks, 128), qh.reshape(n_blocks, 64), q_scales_bytes, d_bytes], axis=1
    ).astype(np.uint8)
    out[empty] = 0
    return out.reshape(-1)
