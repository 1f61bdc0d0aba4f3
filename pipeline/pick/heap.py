"""The wasm heap a model needs once loaded, and the wasm_memory_limit that allows it.

llama_cpp_canister reads the weights into its wasm32 heap and preallocates the KV cache for the whole
context at load_model; compute buffers scale with the batch (the logits buffer is batch x vocabulary).
Following its README (Appendix B), recipes load with a q8_0 KV cache and a batch of 64, so the estimate is
weights + KV cache + logits + attention scores + a fixed allowance for code, stack and llama.cpp's own
structures. For Qwen3-0.6B Q8_0 at --ctx-size 16384 this gives ~1.72 GiB; upstream measured ~1.76 GiB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GIB = 1024**3
# The IC gives a canister a wasm_memory_limit of 3 GiB unless its controller sets another.
DEFAULT_WASM_MEMORY_LIMIT = 3 * GIB
# llama_cpp_canister's operators raise it to 3.75 GiB; wasm32 cannot use more.
RAISED_WASM_MEMORY_LIMIT = 4_026_531_840
# Upstream's reference load_model uses --ctx-size 16384; models trained on less get their own length.
MAX_LOAD_CONTEXT = 16384
LOAD_BATCH = 64
KV_CACHE_TYPE = "q8_0"
_Q8_0_BYTES_PER_VALUE = 34 / 32
_F32 = 4
HEAP_ALLOWANCE = 100 * 1024**2


@dataclass(frozen=True)
class ModelShape:
    """The hyperparameters that size the heap beyond the weights."""

    n_layer: int
    n_head: int
    n_head_kv: int
    key_length: int
    value_length: int
    n_vocab: int
    context_length: int

    @property
    def load_context(self) -> int:
        return min(self.context_length, MAX_LOAD_CONTEXT)

    @classmethod
    def from_gguf(cls, arch: str, metadata: dict[str, Any], n_vocab: int | None) -> ModelShape | None:
        def get(key: str) -> int | None:
            value = metadata.get(f"{arch}.{key}")
            return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

        n_layer, n_head, n_embd, ctx = (
            get(k) for k in ("block_count", "attention.head_count", "embedding_length", "context_length")
        )
        if not (n_layer and n_head and n_embd and ctx and n_vocab):
            return None
        head = n_embd // n_head
        return cls(
            n_layer=n_layer,
            n_head=n_head,
            n_head_kv=get("attention.head_count_kv") or n_head,
            key_length=get("attention.key_length") or head,
            value_length=get("attention.value_length") or head,
            n_vocab=n_vocab,
            context_length=ctx,
        )

    @classmethod
    def from_hf_config(cls, config: dict[str, Any]) -> ModelShape | None:
        def get(*keys: str) -> int | None:
            for key in keys:
                value = config.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    return value
            return None

        n_layer = get("num_hidden_layers", "n_layer")
        n_head = get("num_attention_heads", "n_head")
        n_embd = get("hidden_size", "n_embd")
        n_vocab = get("vocab_size")
        ctx = get("max_position_embeddings", "n_positions", "n_ctx")
        if not (n_layer and n_head and n_embd and n_vocab and ctx):
            return None
        head = get("head_dim") or n_embd // n_head
        return cls(n_layer, n_head, get("num_key_value_heads") or n_head, head, head, n_vocab, ctx)


def llama_cpp_heap(weights: int, shape: ModelShape | None) -> int:
    """Estimated heap bytes for `weights` bytes of GGUF loaded with `load_args_for(shape)`."""
    if shape is None:
        return weights + HEAP_ALLOWANCE
    ctx = shape.load_context
    kv_values = shape.n_layer * ctx * shape.n_head_kv * (shape.key_length + shape.value_length)
    kv_cache = int(kv_values * _Q8_0_BYTES_PER_VALUE)
    logits = LOAD_BATCH * shape.n_vocab * _F32
    attention_scores = LOAD_BATCH * ctx * shape.n_head * _F32
    return weights + kv_cache + logits + attention_scores + HEAP_ALLOWANCE


def load_args_for(remote: str, shape: ModelShape | None) -> list[str]:
    """load_model arguments matching the heap estimate: q8_0 KV cache, small batches, a bounded context."""
    args = ["--model", remote, "--cache-type-k", KV_CACHE_TYPE, "--cache-type-v", KV_CACHE_TYPE]
    args += ["--batch-size", str(LOAD_BATCH), "--ubatch-size", str(LOAD_BATCH)]
    if shape is not None:
        args += ["--ctx-size", str(shape.load_context)]
    return args


def gib(n: int) -> str:
    """Heap sizes as the IC's settings speak of them: GiB, or MiB below one GiB."""
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / 1024**2:.1f} MiB"
