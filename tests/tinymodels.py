"""Tiny but realistic model checkpoints, generated at test time.

`make_tiny_model` writes a Hugging Face model directory (config.json, model.safetensors or shards with an
index, tokenizer.json with a real byte-level BPE trained on a built-in text, tokenizer_config.json,
generation_config.json) with the tensor names, shapes and dtypes of the real checkpoints of the family:
GPT-2 (f32, Conv1D weights, attn.bias buffers, lm_head stored next to the tied wte, `transformer.` prefix),
Qwen2 (bf16, q/k/v biases, tied embeddings, config vocab padded past the tokenizer's), Llama (bf16,
grouped-query attention, untied lm_head). `make_llama2c` writes llama2.c `model.bin` + `tokenizer.bin`.
Everything is deterministic for a seed.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

Arch = Literal["gpt2", "qwen2", "llama"]
ARCHES: tuple[Arch, ...] = ("gpt2", "qwen2", "llama")

CORPUS = """\
The quick brown fox jumps over the lazy dog. A small model learns to write short stories about a cat,
a dog and a bird who live in a house near the river. Every morning the cat sits in the sun and the dog
runs to the gate. The bird sings a song, and the children laugh. In the evening they all go to sleep.
Once upon a time there was a little girl named Lily. She liked to play outside with her ball. One day
she saw a big red apple on a tree. She wanted to eat it, but it was too high. Her friend Tom came and
helped her. They shared the apple and were happy. "Thank you," said Lily. "You are a good friend."
Numbers like 1, 22, 333 and 2024 appear in text too, as do questions: what is the time? Where are you?
The Internet Computer runs canisters; a canister holds code and state. Models are uploaded in chunks,
each chunk smaller than two megabytes, and the canister writes them to its file system.
Hello world! It's a test: we'll see if they've done it, and I'm sure you'd like it.
"""

QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ message['role'] + ': ' + message['content'] + eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)


@dataclass(frozen=True)
class Dims:
    """Model dimensions; the defaults give a checkpoint of a few hundred kB."""

    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_kv_head: int = 2
    n_ff: int = 128
    n_ctx: int = 128
    bpe_vocab: int = 400
    model_vocab: int | None = None  # embedding rows, when larger than the tokenizer (padded like Qwen/SmolLM)


# ---------------------------------------------------------------------------------------------- tokenizers


def _byte_level_bpe(arch: Arch, bpe_vocab: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    if arch == "gpt2":
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        split = QWEN2_SPLIT if arch == "qwen2" else LLAMA3_SPLIT
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=bpe_vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(CORPUS.splitlines(keepends=True), trainer=trainer)
    return tokenizer


def _special_tokens(arch: Arch) -> list[str]:
    return {
        "gpt2": ["<|endoftext|>"],
        "qwen2": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "llama": ["<s>", "</s>"],
    }[arch]


def _user_tokens(arch: Arch) -> list[str]:
    """Added tokens that are not special (Qwen2.5 has tool-call markers like these)."""
    return ["<tool_call>", "</tool_call>"] if arch == "qwen2" else []


def _train_tokenizer(arch: Arch, bpe_vocab: int) -> Tokenizer:
    tokenizer = _byte_level_bpe(arch, bpe_vocab)
    tokenizer.add_special_tokens(
        [AddedToken(tok, special=True, normalized=False) for tok in _special_tokens(arch)]
    )
    tokenizer.add_tokens([AddedToken(tok, special=False, normalized=False) for tok in _user_tokens(arch)])
    if arch == "llama":
        bos = "<s>"
        tokenizer.post_processor = processors.Sequence(
            [
                processors.ByteLevel(trim_offsets=False),
                processors.TemplateProcessing(
                    single=f"{bos} $A",
                    pair=f"{bos} $A {bos} $B",
                    special_tokens=[(bos, tokenizer.token_to_id(bos))],
                ),
            ]
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def _tokenizer_files(arch: Arch, tokenizer: Tokenizer, n_ctx: int) -> tuple[dict, dict]:
    """tokenizer_config.json and generation_config.json as the family's real checkpoints have them."""
    ids = {tok: tokenizer.token_to_id(tok) for tok in _special_tokens(arch)}
    added = {
        str(tokenizer.token_to_id(tok)): {
            "content": tok,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": tok in ids,
        }
        for tok in _special_tokens(arch) + _user_tokens(arch)
    }
    if arch == "gpt2":
        eot = "<|endoftext|>"
        config = {
            "add_prefix_space": False,
            "added_tokens_decoder": added,
            "bos_token": eot,
            "clean_up_tokenization_spaces": False,
            "eos_token": eot,
            "model_max_length": n_ctx,
            "tokenizer_class": "GPT2Tokenizer",
            "unk_token": eot,
        }
        generation = {"bos_token_id": ids[eot], "eos_token_id": ids[eot]}
    elif arch == "qwen2":
        config = {
            "add_prefix_space": False,
            "added_tokens_decoder": added,
            "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
            "bos_token": None,
            "chat_template": CHATML_TEMPLATE,
            "clean_up_tokenization_spaces": False,
            "eos_token": "<|im_end|>",
            "errors": "replace",
            "model_max_length": n_ctx,
            "pad_token": "<|endoftext|>",
            "split_special_tokens": False,
            "tokenizer_class": "Qwen2Tokenizer",
            "unk_token": None,
        }
        generation = {
            "bos_token_id": ids["<|endoftext|>"],
            "do_sample": True,
            "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
            "pad_token_id": ids["<|endoftext|>"],
            "temperature": 0.7,
            "top_p": 0.8,
        }
    else:
        config = {
            "added_tokens_decoder": added,
            "bos_token": "<s>",
            "chat_template": LLAMA_TEMPLATE,
            "clean_up_tokenization_spaces": False,
            "eos_token": "</s>",
            "model_max_length": n_ctx,
            "tokenizer_class": "PreTrainedTokenizerFast",
        }
        generation = {"bos_token_id": ids["<s>"], "eos_token_id": ids["</s>"]}
    generation["transformers_version"] = "4.44.0"
    return config, generation


# ---------------------------------------------------------------------------------------------- weights


def _config(arch: Arch, dims: Dims, vocab_size: int, ids: dict[str, int]) -> dict:
    if arch == "gpt2":
        return {
            "activation_function": "gelu_new",
            "architectures": ["GPT2LMHeadModel"],
            "attn_pdrop": 0.1,
            "bos_token_id": ids["<|endoftext|>"],
            "embd_pdrop": 0.1,
            "eos_token_id": ids["<|endoftext|>"],
            "initializer_range": 0.02,
            "layer_norm_epsilon": 1e-05,
            "model_type": "gpt2",
            "n_ctx": dims.n_ctx,
            "n_embd": dims.n_embd,
            "n_head": dims.n_head,
            "n_inner": None,
            "n_layer": dims.n_layer,
            "n_positions": dims.n_ctx,
            "resid_pdrop": 0.1,
            "scale_attn_weights": True,
            "torch_dtype": "float32",
            "transformers_version": "4.44.0",
            "use_cache": True,
            "vocab_size": vocab_size,
        }
    common = {
        "attention_dropout": 0.0,
        "hidden_act": "silu",
        "hidden_size": dims.n_embd,
        "initializer_range": 0.02,
        "intermediate_size": dims.n_ff,
        "max_position_embeddings": dims.n_ctx,
        "num_attention_heads": dims.n_head,
        "num_hidden_layers": dims.n_layer,
        "num_key_value_heads": dims.n_kv_head,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.44.0",
        "use_cache": True,
        "vocab_size": vocab_size,
    }
    if arch == "qwen2":
        return {
            **common,
            "architectures": ["Qwen2ForCausalLM"],
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "max_window_layers": dims.n_layer,
            "model_type": "qwen2",
            "rms_norm_eps": 1e-06,
            "rope_theta": 1000000.0,
            "sliding_window": dims.n_ctx,
            "tie_word_embeddings": True,
            "use_sliding_window": False,
        }
    return {
        **common,
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "bos_token_id": ids["<s>"],
        "eos_token_id": ids["</s>"],
        "mlp_bias": False,
        "model_type": "llama",
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
    }


def _tensor_shapes(arch: Arch, dims: Dims, vocab_size: int) -> dict[str, tuple[int, ...]]:
    e, ff, ctx = dims.n_embd, dims.n_ff, dims.n_ctx
    shapes: dict[str, tuple[int, ...]] = {}
    if arch == "gpt2":
        ff = 4 * e
        shapes["transformer.wte.weight"] = (vocab_size, e)
        shapes["transformer.wpe.weight"] = (ctx, e)
        for i in range(dims.n_layer):
            p = f"transformer.h.{i}."
            shapes |= {
                p + "ln_1.weight": (e,),
                p + "ln_1.bias": (e,),
                p + "attn.bias": (1, 1, ctx, ctx),
                p + "attn.masked_bias": (),
                p + "attn.c_attn.weight": (e, 3 * e),
                p + "attn.c_attn.bias": (3 * e,),
                p + "attn.c_proj.weight": (e, e),
                p + "attn.c_proj.bias": (e,),
                p + "ln_2.weight": (e,),
                p + "ln_2.bias": (e,),
                p + "mlp.c_fc.weight": (e, ff),
                p + "mlp.c_fc.bias": (ff,),
                p + "mlp.c_proj.weight": (ff, e),
                p + "mlp.c_proj.bias": (e,),
            }
        shapes["transformer.ln_f.weight"] = (e,)
        shapes["transformer.ln_f.bias"] = (e,)
        shapes["lm_head.weight"] = (vocab_size, e)
        return shapes
    head_dim = e // dims.n_head
    kv = dims.n_kv_head * head_dim
    shapes["model.embed_tokens.weight"] = (vocab_size, e)
    for i in range(dims.n_layer):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (e,),
            p + "self_attn.q_proj.weight": (e, e),
            p + "self_attn.k_proj.weight": (kv, e),
            p + "self_attn.v_proj.weight": (kv, e),
            p + "self_attn.o_proj.weight": (e, e),
            p + "post_attention_layernorm.weight": (e,),
            p + "mlp.gate_proj.weight": (ff, e),
            p + "mlp.up_proj.weight": (ff, e),
            p + "mlp.down_proj.weight": (e, ff),
        }
        if arch == "qwen2":
            shapes |= {
                p + "self_attn.q_proj.bias": (e,),
                p + "self_attn.k_proj.bias": (kv,),
                p + "self_attn.v_proj.bias": (kv,),
            }
    shapes["model.norm.weight"] = (e,)
    if arch == "llama":
        shapes["lm_head.weight"] = (vocab_size, e)
    return shapes


def _tensor_values(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if name.endswith(".attn.bias"):
        ctx = shape[-1]
        return np.tril(np.ones((ctx, ctx), dtype=np.float32)).reshape(shape)
    if name.endswith(".attn.masked_bias"):
        return np.array(-1e4, dtype=np.float32)
    if "norm" in name or ".ln_" in name:
        base = 1.0 if name.endswith("weight") else 0.0
        return (base + 0.05 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    return 0.02 * rng.standard_normal(shape, dtype=np.float32)


def _to_bf16_bytes(values: np.ndarray) -> bytes:
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


def _write_safetensors(path: Path, tensors: list[tuple[str, str, tuple[int, ...], bytes]]) -> int:
    """Writes a safetensors file with tensors in the given order; returns the data size."""
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for *_, data in tensors:
            f.write(data)
    return offset


def _write_weights(
    out_dir: Path, arch: Arch, dims: Dims, vocab_size: int, rng: np.random.Generator, shards: int
) -> None:
    shapes = _tensor_shapes(arch, dims, vocab_size)
    store_bf16 = arch != "gpt2"
    values_by_name: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        tied_copy = name == "lm_head.weight" and arch == "gpt2"
        wte = values_by_name.get("transformer.wte.weight")
        values_by_name[name] = wte if tied_copy and wte is not None else _tensor_values(name, shape, rng)
    tensors: list[tuple[str, str, tuple[int, ...], bytes]] = []
    for name in sorted(shapes):
        values = values_by_name[name]
        if store_bf16:
            tensors.append((name, "BF16", shapes[name], _to_bf16_bytes(values)))
        else:
            tensors.append((name, "F32", shapes[name], np.ascontiguousarray(values, dtype="<f4").tobytes()))
    if shards <= 1:
        _write_safetensors(out_dir / "model.safetensors", tensors)
        return
    per_shard = -(-len(tensors) // shards)
    weight_map: dict[str, str] = {}
    total = 0
    for k in range(shards):
        part = tensors[k * per_shard : (k + 1) * per_shard]
        file_name = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        total += _write_safetensors(out_dir / file_name, part)
        weight_map |= {name: file_name for name, *_ in part}
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def make_tiny_model(
    arch: Arch, out_dir: Path | str, *, seed: int = 0, shards: int = 1, dims: Dims | None = None
) -> Path:
    """Writes a tiny Hugging Face checkpoint of `arch` into `out_dir` and returns the directory."""
    if arch not in ARCHES:
        raise ValueError(f"unknown tiny model arch {arch!r}; expected one of {ARCHES}")
    dims = dims or Dims()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tokenizer = _train_tokenizer(arch, dims.bpe_vocab)
    n_tokens = tokenizer.get_vocab_size(with_added_tokens=True)
    # Qwen pads its embedding matrix past the tokenizer's vocabulary (151,936 rows for 151,665 tokens).
    vocab_size = -(-n_tokens // 64) * 64 if arch == "qwen2" else n_tokens
    if dims.model_vocab is not None:
        if dims.model_vocab < n_tokens:
            raise ValueError(
                f"model_vocab {dims.model_vocab} is smaller than the tokenizer's {n_tokens} tokens"
            )
        vocab_size = dims.model_vocab
    ids = {tok: tokenizer.token_to_id(tok) for tok in _special_tokens(arch)}
    tokenizer_config, generation_config = _tokenizer_files(arch, tokenizer, dims.n_ctx)
    tokenizer.save(str(out / "tokenizer.json"))
    for name, data in (
        ("config.json", _config(arch, dims, vocab_size, ids)),
        ("tokenizer_config.json", tokenizer_config),
        ("generation_config.json", generation_config),
    ):
        (out / name).write_text(json.dumps(data, indent=2) + "\n")
    _write_weights(out, arch, dims, vocab_size, rng, shards)
    return out


# ---------------------------------------------------------------------------------------------- llama2.c


def _llama2c_pieces(n_pieces: int) -> list[str]:
    words: list[str] = []
    for word in CORPUS.replace("\n", " ").split(" "):
        piece = " " + word.strip('.,!?:;"')
        if len(piece) > 1 and piece not in words:
            words.append(piece)
    return words[:n_pieces]


def make_llama2c(
    out_dir: Path | str,
    *,
    seed: int = 0,
    dim: int = 64,
    hidden_dim: int = 172,
    n_layers: int = 2,
    n_heads: int = 4,
    vocab_size: int = 320,
    seq_len: int = 64,
    shared_classifier: bool = True,
) -> tuple[Path, Path]:
    """Writes llama2.c `model.bin` and `tokenizer.bin` (the run.c layout) and returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    head_size = dim // n_heads
    header_vocab = vocab_size if shared_classifier else -vocab_size
    header = struct.pack("<7i", dim, hidden_dim, n_layers, n_heads, n_heads, header_vocab, seq_len)
    shapes = [
        (vocab_size, dim),  # token embedding
        (n_layers, dim),  # rms_att
        (n_layers, dim, dim),  # wq
        (n_layers, dim, dim),  # wk
        (n_layers, dim, dim),  # wv
        (n_layers, dim, dim),  # wo
        (n_layers, dim),  # rms_ffn
        (n_layers, hidden_dim, dim),  # w1
        (n_layers, dim, hidden_dim),  # w2
        (n_layers, hidden_dim, dim),  # w3
        (dim,),  # rms_final
        (seq_len, head_size // 2),  # freq_cis_real
        (seq_len, head_size // 2),  # freq_cis_imag
    ]
    if not shared_classifier:
        shapes.append((vocab_size, dim))
    model_path = out / "model.bin"
    with open(model_path, "wb") as f:
        f.write(header)
        for shape in shapes:
            f.write((0.02 * rng.standard_normal(shape, dtype=np.float32)).astype("<f4").tobytes())
    specials = ["<unk>", "\n<s>\n", "\n</s>\n"]
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    pieces = _llama2c_pieces(vocab_size - len(specials) - len(byte_tokens))
    tokens = specials + byte_tokens + pieces
    tokens += [f"<extra_{i}>" for i in range(vocab_size - len(tokens))]
    encoded = [tok.encode() for tok in tokens]
    tokenizer_path = out / "tokenizer.bin"
    with open(tokenizer_path, "wb") as f:
        f.write(struct.pack("<i", max(len(b) for b in encoded)))
        for index, data in enumerate(encoded):
            score = 0.0 if index < len(specials) + len(byte_tokens) else -float(index)
            f.write(struct.pack("<fi", score, len(data)))
            f.write(data)
    return model_path, tokenizer_path
