"""Repos for `prep recipes new`: GGUF quantizations of realistic sizes, safetensors to convert, odd files.

Big files are SparseContent: a real GGUF (or safetensors) header, written by gguf's own writer with the
tensor list of a real model shape and a full-size vocabulary, followed by virtual zeros up to the size the
tensor data takes. Range reads see real headers; sizes are what those tensors would weigh.
"""

from __future__ import annotations

import json
import math
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import gguf
import numpy as np

from pipeline.formats.llama2c import expected_model_size
from tests.hubsim.repos import SparseContent
from tests.hubsim.server import HubSim
from tests.tinymodels import CHATML_TEMPLATE, make_llama2c, make_tiny_model

Q = gguf.GGMLQuantizationType
F = gguf.LlamaFileType
README = "---\nlicense: apache-2.0\nbase_model: {base}\n---\n# {name}\n"

QWEN3_REPO = "sim/Qwen3-1.7B-GGUF"  # Q8_0 over the one-message limit; Q6_K fits; a split F32; F16
WIDE_REPO = "sim/Wide-1.5B-GGUF"  # no GQA, long context: Q8_0 needs wasm_memory_limit; plus a CLIP mmproj
TINY_GGUF_REPO = "sim/Tiny-GGUF"  # real tiny Q8_0 / Q4_0 files: the one `prep run` uses
CONVERT_REPO = "sim/Qwen2.5-1.5B-Instruct"  # safetensors only, converts to a Q8_0 that fits
TINY_CONVERT_REPO = "sim/Tiny-Llama-Safetensors"  # a real tiny safetensors checkpoint
MAMBA_REPO = "sim/Mamba-Tiny"  # safetensors of an architecture prep cannot convert
LLAMA2C_REPO = "sim/tiny-llama2c"  # a llama2.c model with its tokenizer, and a .bin that is no model
BIG_CONVERT_REPO = "sim/Qwen2.5-7B-Instruct"  # two safetensors shards too big even as Q4_K_M
GPT2_REPO = "sim/tiny-gpt2"  # a GPT-2 checkpoint for the gpt2 canister
TINYLLAMAS_REPO = "sim/tinyllamas"  # stories15M.bin alone, like karpathy/tinyllamas: no tokenizer.bin


@dataclass(frozen=True)
class Shape:
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_vocab: int
    n_ctx: int
    head_dim: int


QWEN3_1_7B = Shape(
    n_layer=28, n_embd=2048, n_head=16, n_head_kv=8, n_ff=6144, n_vocab=151936, n_ctx=40960, head_dim=128
)
WIDE_1_5B = Shape(
    n_layer=28, n_embd=2048, n_head=16, n_head_kv=16, n_ff=5632, n_vocab=32000, n_ctx=32768, head_dim=128
)
QWEN2_5_7B = Shape(
    n_layer=28, n_embd=3584, n_head=28, n_head_kv=4, n_ff=18944, n_vocab=152064, n_ctx=32768, head_dim=128
)
QWEN2_5_1_5B = Shape(
    n_layer=28, n_embd=1536, n_head=12, n_head_kv=2, n_ff=8960, n_vocab=151936, n_ctx=32768, head_dim=128
)

# Per file type: the type of most 2-D weights, and of the tensors llama.cpp gives more bits in a K-quant mix.
MIXES: dict[str, tuple[F, Q, Q]] = {
    "Q8_0": (F.MOSTLY_Q8_0, Q.Q8_0, Q.Q8_0),
    "Q6_K": (F.MOSTLY_Q6_K, Q.Q6_K, Q.Q6_K),
    "Q5_K_M": (F.MOSTLY_Q5_K_M, Q.Q5_K, Q.Q6_K),
    "Q4_K_M": (F.MOSTLY_Q4_K_M, Q.Q4_K, Q.Q6_K),
    "F16": (F.MOSTLY_F16, Q.F16, Q.F16),
    "F32": (F.ALL_F32, Q.F32, Q.F32),
}


def _tensors(shape: Shape, mix: str) -> list[tuple[str, tuple[int, ...], Q]]:
    """(name, numpy shape, type) of a llama-style decoder with tied embeddings, as llama.cpp names them."""
    _, main, more = MIXES[mix]
    e, kv = shape.n_embd, shape.n_head_kv * shape.head_dim
    q = shape.n_head * shape.head_dim
    out = [("token_embd.weight", (shape.n_vocab, e), more), ("output_norm.weight", (e,), Q.F32)]
    for i in range(shape.n_layer):
        p = f"blk.{i}."
        bigger = more if i % 2 == 0 else main  # llama.cpp's use_more_bits picks about half the layers
        out += [
            (p + "attn_norm.weight", (e,), Q.F32),
            (p + "attn_q.weight", (q, e), main),
            (p + "attn_k.weight", (kv, e), main),
            (p + "attn_v.weight", (kv, e), bigger),
            (p + "attn_output.weight", (e, q), main),
            (p + "ffn_norm.weight", (e,), Q.F32),
            (p + "ffn_gate.weight", (shape.n_ff, e), main),
            (p + "ffn_up.weight", (shape.n_ff, e), main),
            (p + "ffn_down.weight", (e, shape.n_ff), bigger),
        ]
    return out


def _nbytes(dims: tuple[int, ...], qtype: Q) -> int:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    return math.prod(dims) // block * size


def _write_header(arch: str, shape: Shape, mix: str, *, name: str, template: str | None) -> SparseContent:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "h.gguf"
        writer = gguf.GGUFWriter(str(path), arch)
        writer.add_name(name)
        writer.add_file_type(int(MIXES[mix][0]))
        writer.add_block_count(shape.n_layer)
        writer.add_context_length(shape.n_ctx)
        writer.add_embedding_length(shape.n_embd)
        writer.add_feed_forward_length(shape.n_ff)
        writer.add_head_count(shape.n_head)
        writer.add_head_count_kv(shape.n_head_kv)
        writer.add_key_length(shape.head_dim)
        writer.add_value_length(shape.head_dim)
        writer.add_tokenizer_model("gpt2")
        writer.add_token_list([f"tok{i}" for i in range(shape.n_vocab)])
        writer.add_token_types([1] * shape.n_vocab)
        if template is not None:
            writer.add_chat_template(template)
        data = 0
        for tensor_name, dims, qtype in _tensors(shape, mix):
            nbytes = _nbytes(dims, qtype)
            writer.add_tensor_info(tensor_name, dims, np.dtype(np.float32), nbytes, raw_dtype=qtype)
            data += gguf.GGUFWriter.ggml_pad(nbytes, writer.data_alignment)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        writer.close()
        head = path.read_bytes()
    data_start = gguf.GGUFWriter.ggml_pad(len(head), 32)
    return SparseContent(head, data_start + data)


@cache
def sparse_gguf(arch: str, shape: Shape, mix: str, name: str) -> SparseContent:
    return _write_header(arch, shape, mix, name=name, template=CHATML_TEMPLATE)


def sparse_safetensors(shape: Shape, shards: int = 1) -> list[SparseContent]:
    """A bf16 checkpoint of `shape` with Hugging Face tensor names and tied embeddings, in `shards` files."""
    e, kv, q = shape.n_embd, shape.n_head_kv * shape.head_dim, shape.n_head * shape.head_dim
    tensors: list[tuple[str, tuple[int, ...]]] = [
        ("model.embed_tokens.weight", (shape.n_vocab, e)),
        ("model.norm.weight", (e,)),
    ]
    for i in range(shape.n_layer):
        p = f"model.layers.{i}."
        tensors += [
            (p + "input_layernorm.weight", (e,)),
            (p + "self_attn.q_proj.weight", (q, e)),
            (p + "self_attn.q_proj.bias", (q,)),
            (p + "self_attn.k_proj.weight", (kv, e)),
            (p + "self_attn.k_proj.bias", (kv,)),
            (p + "self_attn.v_proj.weight", (kv, e)),
            (p + "self_attn.v_proj.bias", (kv,)),
            (p + "self_attn.o_proj.weight", (e, q)),
            (p + "post_attention_layernorm.weight", (e,)),
            (p + "mlp.gate_proj.weight", (shape.n_ff, e)),
            (p + "mlp.up_proj.weight", (shape.n_ff, e)),
            (p + "mlp.down_proj.weight", (e, shape.n_ff)),
        ]
    per_shard = -(-len(tensors) // shards)
    return [_safetensors_file(tensors[i : i + per_shard]) for i in range(0, len(tensors), per_shard)]


def _safetensors_file(tensors: list[tuple[str, tuple[int, ...]]]) -> SparseContent:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dims in tensors:
        nbytes = 2 * math.prod(dims)
        header[name] = {"dtype": "BF16", "shape": list(dims), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header).encode()
    return SparseContent(struct.pack("<Q", len(raw)) + raw, 8 + len(raw) + offset)


def _qwen2_config(shape: Shape) -> bytes:
    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "hidden_size": shape.n_embd,
        "intermediate_size": shape.n_ff,
        "num_hidden_layers": shape.n_layer,
        "num_attention_heads": shape.n_head,
        "num_key_value_heads": shape.n_head_kv,
        "max_position_embeddings": shape.n_ctx,
        "vocab_size": shape.n_vocab,
        "tie_word_embeddings": True,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
    }
    return json.dumps(config).encode()


def _tiny_gguf(path: Path, qtype: Q, file_type: F) -> bytes:
    """A real, small, loadable qwen2 GGUF whose weights are stored as `qtype`."""
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_name("tiny")
    writer.add_file_type(int(file_type))
    writer.add_block_count(1)
    writer.add_context_length(256)
    writer.add_embedding_length(64)
    writer.add_head_count(4)
    writer.add_token_list([f"tok{i}" for i in range(64)])
    writer.add_chat_template(CHATML_TEMPLATE)
    weights = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    writer.add_tensor("token_embd.weight", gguf.quants.quantize(weights, qtype), raw_dtype=qtype)
    writer.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def _checkpoint_files(directory: Path) -> dict[str, bytes | SparseContent]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _readme(name: str, base: str) -> bytes:
    return README.format(name=name, base=base).encode()


def add_pick_repos(sim: HubSim, root: Path, repos: tuple[str, ...] | None = None) -> dict[str, str]:
    """Adds the repos above (or those named in `repos`) to `sim`; returns repo id -> commit."""
    root.mkdir(parents=True, exist_ok=True)
    makers: dict[str, Callable[[Path], dict[str, bytes | SparseContent]]] = {
        QWEN3_REPO: lambda _: _qwen3_files(),
        WIDE_REPO: lambda _: _wide_files(),
        TINY_GGUF_REPO: _tiny_gguf_files,
        CONVERT_REPO: lambda _: _convert_files(),
        TINY_CONVERT_REPO: _tiny_convert_files,
        MAMBA_REPO: _mamba_files,
        LLAMA2C_REPO: _llama2c_files,
        BIG_CONVERT_REPO: lambda _: _convert_files(QWEN2_5_7B, shards=2),
        GPT2_REPO: lambda d: _checkpoint_files(make_tiny_model("gpt2", d)),
        TINYLLAMAS_REPO: lambda _: {"stories15M.bin": _stories15m()},
    }
    chosen = repos or tuple(makers)
    return {repo: sim.add_repo(repo, makers[repo](root / repo.replace("/", "--"))) for repo in chosen}


def _qwen3_files() -> dict[str, bytes | SparseContent]:
    files: dict[str, bytes | SparseContent] = {
        f"Qwen3-1.7B-{mix}.gguf": sparse_gguf("qwen3", QWEN3_1_7B, mix, "Qwen3 1.7B")
        for mix in ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "F16")
    }
    # A split file: only its first part is listed here, which is all the verdict needs.
    files["Qwen3-1.7B-F32-00001-of-00002.gguf"] = SparseContent(b"GGUF", 4_000_000_000)
    files["README.md"] = _readme("Qwen3-1.7B-GGUF", "Qwen/Qwen3-1.7B")
    return files


def _wide_files() -> dict[str, bytes | SparseContent]:
    files: dict[str, bytes | SparseContent] = {
        f"Wide-1.5B-{mix}.gguf": sparse_gguf("llama", WIDE_1_5B, mix, "Wide 1.5B")
        for mix in ("Q8_0", "Q4_K_M")
    }
    files["mmproj-Wide-1.5B-F16.gguf"] = sparse_gguf("clip", WIDE_1_5B, "F16", "Wide 1.5B vision projector")
    # A real header listed with a size far smaller than its tensors need: a truncated upload.
    head = sparse_gguf("llama", WIDE_1_5B, "Q4_K_M", "Wide 1.5B").head
    files["Wide-1.5B-Q4_0-truncated.gguf"] = SparseContent(head, len(head) + 4096)
    # A header whose first key claims to be 2**60 bytes long: reading it must stop, not grow forever.
    hostile = b"GGUF" + struct.pack("<IQQQ", 3, 1, 1, 1 << 60)
    files["Wide-1.5B-hostile.gguf"] = SparseContent(hostile, 3_000_000_000)
    files["README.md"] = b"---\nlicense: other\nlicense_name: wide-community-licence\n---\n# Wide\n"
    return files


def _tiny_gguf_files(directory: Path) -> dict[str, bytes | SparseContent]:
    directory.mkdir(parents=True, exist_ok=True)
    return {
        "tiny-Q8_0.gguf": _tiny_gguf(directory / "q8.gguf", Q.Q8_0, F.MOSTLY_Q8_0),
        "tiny-Q4_0.gguf": _tiny_gguf(directory / "q4.gguf", Q.Q4_0, F.MOSTLY_Q4_0),
        "README.md": _readme("Tiny-GGUF", "sim/Tiny"),
    }


def _convert_files(shape: Shape = QWEN2_5_1_5B, shards: int = 1) -> dict[str, bytes | SparseContent]:
    tokenizer_config = {"chat_template": CHATML_TEMPLATE, "eos_token": "<|im_end|>", "bos_token": None}
    parts = sparse_safetensors(shape, shards)
    names = (
        ["model.safetensors"]
        if shards == 1
        else [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    )
    files: dict[str, bytes | SparseContent] = dict(zip(names, parts, strict=True))
    files |= {
        "config.json": _qwen2_config(shape),
        "tokenizer.json": json.dumps({"version": "1.0", "model": {"type": "BPE"}}).encode(),
        "tokenizer_config.json": json.dumps(tokenizer_config).encode(),
        "README.md": _readme("Qwen2.5-Instruct", "Qwen/Qwen2.5"),
    }
    return files


def _tiny_convert_files(directory: Path) -> dict[str, bytes | SparseContent]:
    files = _checkpoint_files(make_tiny_model("llama", directory))
    files["README.md"] = _readme("Tiny-Llama", "sim/Tiny")
    return files


def _llama2c_files(directory: Path) -> dict[str, bytes | SparseContent]:
    model, tokenizer = make_llama2c(directory)
    return {
        "stories-tiny.bin": model.read_bytes(),
        "tokenizer.bin": tokenizer.read_bytes(),
        "optimizer-state.bin": bytes(range(256)) * 8,
        "README.md": b"---\nlicense: mit\n---\n",
    }


def _stories15m() -> SparseContent:
    header = (288, 768, 6, 6, 6, 32000, 256)  # stories15M: dim, hidden, layers, heads, kv heads, vocab, seq
    return SparseContent(struct.pack("<7i", *header), expected_model_size(header))


def _mamba_files(directory: Path) -> dict[str, bytes | SparseContent]:
    files = _checkpoint_files(make_tiny_model("llama", directory))
    config = json.loads(files["config.json"])  # type: ignore[arg-type]
    config["architectures"] = ["MambaForCausalLM"]
    files["config.json"] = json.dumps(config).encode()
    return files
