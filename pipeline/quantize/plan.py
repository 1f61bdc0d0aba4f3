"""Which ggml type each tensor gets, following llama.cpp's llama_model_quantize for the simple file types.

The rules (llama.cpp src/llama-quant.cpp, as vendored by llama-cpp-python 0.3.36):
- only tensors with 2+ dimensions whose name ends in "weight" are quantized; norms, positional
  embeddings, MoE gates and a list of small special tensors keep their type;
- for block-quantized file types the output tensor (or, when the model has no output tensor, the tied
  token embedding) gets Q6_K, or Q8_0 when its rows are not a multiple of the block size;
- attention V/K tensors of 8-expert models get Q8_0;
- a tensor whose row length is not a multiple of the chosen block size falls back
  (Q6_K -> Q8_0; a 32-block type -> F16).
"""

from __future__ import annotations

from dataclasses import dataclass

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

from pipeline.errors import PrepError, UsageError
from pipeline.quantize.layout import GgufLayout, TensorInfo

Q = GGMLQuantizationType

# File types this package writes itself (through gguf.quants); the rest need llama.cpp.
NATIVE_FILE_TYPES: dict[str, tuple[LlamaFileType, GGMLQuantizationType]] = {
    "f32": (LlamaFileType.ALL_F32, Q.F32),
    "f16": (LlamaFileType.MOSTLY_F16, Q.F16),
    "bf16": (LlamaFileType.MOSTLY_BF16, Q.BF16),
    "q8_0": (LlamaFileType.MOSTLY_Q8_0, Q.Q8_0),
    "q4_0": (LlamaFileType.MOSTLY_Q4_0, Q.Q4_0),
    "q4_1": (LlamaFileType.MOSTLY_Q4_1, Q.Q4_1),
    "q5_0": (LlamaFileType.MOSTLY_Q5_0, Q.Q5_0),
    "q5_1": (LlamaFileType.MOSTLY_Q5_1, Q.Q5_1),
}
LLAMA_FILE_TYPES: dict[str, LlamaFileType] = {
    "q2_k": LlamaFileType.MOSTLY_Q2_K,
    "q3_k_s": LlamaFileType.MOSTLY_Q3_K_S,
    "q3_k_m": LlamaFileType.MOSTLY_Q3_K_M,
    "q3_k_l": LlamaFileType.MOSTLY_Q3_K_L,
    "q4_k_s": LlamaFileType.MOSTLY_Q4_K_S,
    "q4_k_m": LlamaFileType.MOSTLY_Q4_K_M,
    "q5_k_s": LlamaFileType.MOSTLY_Q5_K_S,
    "q5_k_m": LlamaFileType.MOSTLY_Q5_K_M,
    "q6_k": LlamaFileType.MOSTLY_Q6_K,
}
SOURCE_TYPES = (Q.F32, Q.F16, Q.BF16)

_FLOAT_TYPES = (Q.F32, Q.F16, Q.BF16)

# Substrings of tensor names llama.cpp never quantizes (besides norms and 1-D tensors).
_KEEP_SUBSTRINGS = (
    "_norm.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_tid2eid.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
    "time_mix_first.weight",
    "time_mix_w0.weight",
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_v0.weight",
    "time_mix_v1.weight",
    "time_mix_v2.weight",
    "time_mix_a0.weight",
    "time_mix_a1.weight",
    "time_mix_a2.weight",
    "time_mix_g1.weight",
    "time_mix_g2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",
    ".position_embd",
    "sam.pos_embd",
    "sam.neck.",
    "sam.net_",
    ".rel_pos",
    ".patch_embd",
    ".patch_merger",
    "a.rvq.codebook",
    "mm.a.code_embd",
)
_KEEP_NAMES = ("position_embd.weight", "token_types.weight")
_TOKEN_EMBD_NAMES = ("token_embd.weight", "per_layer_token_embd.weight")
_OUTPUT_NAME = "output.weight"
_ATTN_V_PARTS = ("attn_qkv.weight", "attn_kv_b.weight", "attn_v.weight")


@dataclass(frozen=True)
class TensorPlan:
    tensor: TensorInfo
    target: GGMLQuantizationType

    @property
    def converts(self) -> bool:
        return self.target != self.tensor.ggml_type


def file_type_for(name: str) -> tuple[LlamaFileType, GGMLQuantizationType]:
    try:
        return NATIVE_FILE_TYPES[name.lower()]
    except KeyError:
        raise UsageError(
            f"quantize type {name!r} is not one this package writes itself",
            hint=f"types: {', '.join(NATIVE_FILE_TYPES)}; K-quants: {', '.join(LLAMA_FILE_TYPES)}",
        ) from None


def tensor_order_key(name: str) -> tuple[int, str]:
    """llama.cpp writes tensors ordered by block number (non-block tensors first), then by name."""
    if name.startswith("blk."):
        number = name[4:].split(".", 1)[0]
        if number.isdigit():
            return int(number), name
    return -1, name


def plan_tensors(layout: GgufLayout, default_type: GGMLQuantizationType) -> list[TensorPlan]:
    """The target type of every tensor, in llama.cpp's output order."""
    for tensor in layout.tensors:
        if tensor.ggml_type not in SOURCE_TYPES:
            raise PrepError(
                f"{layout.path}: tensor {tensor.name} is already {tensor.ggml_type.name}; "
                "requantizing loses quality and is refused",
                hint="quantize from the F32/F16/BF16 GGUF (prep convert --type f16)",
            )
    names = {t.name for t in layout.tensors}
    tied_embeddings = _OUTPUT_NAME not in names
    arch = layout.architecture or ""
    expert_count = layout.value(f"{arch}.expert_count")
    eight_experts = expert_count == 8
    ordered = sorted(layout.tensors, key=lambda t: tensor_order_key(t.name))
    return [
        TensorPlan(t, _target_type(t, default_type, arch, tied_embeddings, eight_experts)) for t in ordered
    ]


def _allows_quantization(tensor: TensorInfo) -> bool:
    name = tensor.name
    if tensor.n_dims < 2 or not name.endswith("weight") or name in _KEEP_NAMES:
        return False
    return not any(part in name for part in _KEEP_SUBSTRINGS)


def _target_type(
    tensor: TensorInfo,
    default_type: GGMLQuantizationType,
    arch: str,
    tied_embeddings: bool,
    eight_experts: bool,
) -> GGMLQuantizationType:
    if not _allows_quantization(tensor):
        return tensor.ggml_type
    if default_type in _FLOAT_TYPES:
        return default_type
    row = tensor.shape[0]
    target = default_type
    is_output = tensor.name == _OUTPUT_NAME or (tied_embeddings and tensor.name in _TOKEN_EMBD_NAMES)
    if is_output:
        if arch == "falcon" or row % _block_size(default_type) != 0:
            target = Q.Q8_0
        elif default_type != Q.Q8_0:
            target = Q.Q6_K
    elif eight_experts and (any(p in tensor.name for p in _ATTN_V_PARTS) or "attn_k.weight" in tensor.name):
        target = Q.Q8_0
    return _fallback(row, target)


def _fallback(row: int, target: GGMLQuantizationType) -> GGMLQuantizationType:
    if row % _block_size(target) == 0:
        return target
    if target == Q.Q6_K:
        target = Q.Q8_0
    return target if row % _block_size(target) == 0 else Q.F16


def _block_size(ggml_type: GGMLQuantizationType) -> int:
    return GGML_QUANT_SIZES[ggml_type][0]
