"""GGUF quantization: byte-identical to llama_model_quantize; K-quants via llama.cpp load and run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

from pipeline.convert.converter import convert_model
from pipeline.errors import PrepError, UsageError
from pipeline.quantize import quantize_gguf
from pipeline.quantize.kernels import KERNEL_NAMES, select_kernels
from pipeline.quantize.q6_k import quantize_q6_k
from tests.tinymodels import Dims, make_tiny_model

# Rows of 256 make llama.cpp pick Q6_K for the output tensor in Q4_x/Q5_x files.
WIDE = Dims(n_embd=256, n_ff=512, n_head=4, n_kv_head=2)
# Rows of 48 fit no 32-block type: llama.cpp falls back to F16.
ODD = Dims(n_embd=48, n_ff=96, n_head=4, n_kv_head=2)


@pytest.fixture(scope="module")
def float_ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """F16 GGUFs: qwen2 (tied embeddings), llama (own output), gpt2 (64-wide rows), odd llama."""
    root = tmp_path_factory.mktemp("float_ggufs")
    out = {}
    for name, arch, dims in (
        ("qwen2", "qwen2", WIDE),
        ("llama", "llama", WIDE),
        ("gpt2", "gpt2", None),
        ("odd", "llama", ODD),
    ):
        model_dir = make_tiny_model(arch, root / name, seed=1, dims=dims)
        out[name] = root / f"{name}-f16.gguf"
        convert_model(model_dir, out[name], "f16")
    return out


def _types(path: Path) -> dict[str, str]:
    return {t.name: t.tensor_type.name for t in GGUFReader(path).tensors}


def test_type_choice_follows_llama_cpp(float_ggufs: dict[str, Path], tmp_path: Path) -> None:
    qwen = _types(quantize_gguf(float_ggufs["qwen2"], tmp_path / "qwen-q4_0.gguf", "q4_0").path)
    assert qwen["token_embd.weight"] == "Q6_K"  # tied embeddings double as the output tensor
    assert qwen["blk.0.attn_q.weight"] == "Q4_0"
    assert qwen["blk.0.attn_norm.weight"] == "F32"
    llama = _types(quantize_gguf(float_ggufs["llama"], tmp_path / "llama-q4_0.gguf", "q4_0").path)
    assert (llama["output.weight"], llama["token_embd.weight"]) == ("Q6_K", "Q4_0")
    gpt2 = _types(quantize_gguf(float_ggufs["gpt2"], tmp_path / "gpt2-q4_0.gguf", "q4_0").path)
    assert gpt2["position_embd.weight"] == "F32"  # positional embeddings are never quantized
    assert gpt2["output.weight"] == "Q8_0"  # 64-wide rows: no Q6_K, Q8_0 instead
    odd = _types(quantize_gguf(float_ggufs["odd"], tmp_path / "odd-q4_0.gguf", "q4_0").path)
    assert odd["blk.0.attn_q.weight"] == "F16"  # 48-wide rows do not fit 32-blocks


def test_metadata_updated_and_written_atomically(float_ggufs: dict[str, Path], tmp_path: Path) -> None:
    result = quantize_gguf(float_ggufs["llama"], tmp_path / "m.gguf", "q8_0")
    reader = GGUFReader(result.path)
    keys = list(reader.fields)
    assert keys[-2:] == ["general.quantization_version", "general.file_type"]
    assert int(reader.fields["general.file_type"].parts[-1][0]) == 7
    source = GGUFReader(float_ggufs["llama"])
    assert [k for k in keys if k not in ("general.quantization_version", "general.file_type")] == [
        k for k in source.fields if k not in ("general.quantization_version", "general.file_type")
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]


def test_q6_k_round_trips_within_its_precision() -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal(256 * 40).astype(np.float32)
    values[:256] = 0  # an all-zero super-block
    packed = quantize_q6_k(values)
    assert packed.nbytes == 40 * 210
    restored = dequantize(packed.reshape(40, 210), GGMLQuantizationType.Q6_K).reshape(-1)
    assert np.all(restored[:256] == 0)
    assert np.abs(restored - values).max() < 0.05 * np.abs(values).max()


def _q6_k_edge_cases(rows: int, width: int, seed: int) -> np.ndarray:
    """Random rows at several magnitudes, with the super-blocks that take the rare paths of the reference:
    all zero (+0.0 and -0.0), one huge value, +-ties for the largest magnitude, values on exact halves,
    sub-blocks too small for their super-block's scale (level search kept), scales that underflow
    fp16 or come near its largest value."""
    rng = np.random.default_rng(seed)
    magnitudes = rng.choice(np.array([1e-9, 1e-3, 1.0, 30.0, 1e4]), size=(rows, 1))
    values = (rng.standard_normal((rows, width)) * magnitudes).astype(np.float32)
    blocks = values.reshape(-1, 256)
    blocks[0] = 0.0
    blocks[1] = -0.0
    blocks[2, :16] = -0.0  # one all -0.0 sub-block among normal ones
    blocks[3, 37] = 1e6  # one huge value: the other sub-blocks' scales round to zero
    blocks[4, ::16] = 3e4  # a huge value in every sub-block
    blocks[5, 17] = -2e8  # a super-block scale near the largest fp16
    blocks[6] = 1e-16  # below the reference's epsilon: written as zeros
    blocks[7] = np.arange(256) % 7 - 3.0  # few distinct values: many exact ties
    blocks[8] = np.round(blocks[8] * 4) / 4  # quarters: exact halves after scaling
    blocks[9, :16] = np.tile(np.float32([0.5, -0.5]), 8)  # +-tie for the largest magnitude
    blocks[10] = 0.0
    blocks[10, 100] = 5.0  # a lone value
    blocks[11, :128] = -0.0  # half -0.0, half values
    blocks[12] = rng.standard_t(2, 256).astype(np.float32)  # heavy tails
    blocks[-13:] = blocks[:13]  # the same at the end
    return values


@pytest.mark.llama
@pytest.mark.slow
def test_q6_k_byte_identical_to_llama_cpp_on_a_large_tensor(tmp_path: Path) -> None:
    """A 4000 x 512 f32 output tensor (random, plus the edge cases) goes Q6_K in a Q4_0 file: our bytes for
    it, and for the whole file, equal llama_model_quantize's. 8,000 super-blocks: the last of the
    quantizer's chunks is a partial one."""
    from pipeline.llamacpp import quantize_with_llama
    from pipeline.quantize.plan import NATIVE_FILE_TYPES

    dims = Dims(n_embd=512, n_ff=512, n_head=4, n_kv_head=2, model_vocab=4000)
    source = tmp_path / "f32.gguf"
    convert_model(make_tiny_model("llama", tmp_path / "llama", seed=3, dims=dims), source, "f32")
    output = {t.name: t for t in GGUFReader(source).tensors}["output.weight"]
    assert (output.tensor_type, output.n_elements) == (GGMLQuantizationType.F32, 4000 * 512)
    edge = _q6_k_edge_cases(4000, 512, seed=4)
    with open(source, "r+b") as handle:  # the checkpoint is bf16: put the f32 values in the GGUF itself
        handle.seek(output.data_offset)
        handle.write(edge.tobytes())
    ours = quantize_gguf(source, tmp_path / "ours.gguf", "q4_0", kernels="numpy").path
    theirs = tmp_path / "theirs.gguf"
    quantize_with_llama(source, theirs, int(NATIVE_FILE_TYPES["q4_0"][0]))
    output = {t.name: t for t in GGUFReader(theirs).tensors}["output.weight"]
    assert output.tensor_type == GGMLQuantizationType.Q6_K
    assert np.array_equal(quantize_q6_k(edge), np.asarray(output.data).reshape(-1))
    assert ours.read_bytes() == theirs.read_bytes()


def test_q6_k_refuses_values_beyond_a_float16_scale() -> None:
    values = np.ones(256 * 300, dtype=np.float32)
    values[
        256 * 299 + 5
    ] = -1e9  # its super-block scale overflows float16; llama.cpp's validation refuses it too
    with pytest.raises(PrepError, match="super-block 299 "):
        quantize_q6_k(values)


def test_refuses_requantizing_and_unknown_types(float_ggufs: dict[str, Path], tmp_path: Path) -> None:
    q8 = quantize_gguf(float_ggufs["qwen2"], tmp_path / "q8.gguf", "q8_0").path
    with pytest.raises(PrepError, match="requantizing"):
        quantize_gguf(q8, tmp_path / "q4.gguf", "q4_0")
    with pytest.raises(UsageError, match="q9_9"):
        quantize_gguf(float_ggufs["qwen2"], tmp_path / "x.gguf", "q9_9")


@pytest.mark.llama
@pytest.mark.parametrize("kernels", KERNEL_NAMES)
@pytest.mark.parametrize("arch", ["qwen2", "llama", "gpt2", "odd"])
@pytest.mark.parametrize("qtype", ["f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"])
def test_byte_identical_to_llama_cpp(
    float_ggufs: dict[str, Path], tmp_path: Path, arch: str, qtype: str, kernels: str
) -> None:
    from pipeline.llamacpp import quantize_with_llama
    from pipeline.quantize.plan import NATIVE_FILE_TYPES

    result = quantize_gguf(float_ggufs[arch], tmp_path / "ours.gguf", qtype, kernels=kernels)
    assert result.kernels == kernels
    ours = result.path
    theirs = tmp_path / "theirs.gguf"
    quantize_with_llama(float_ggufs[arch], theirs, int(NATIVE_FILE_TYPES[qtype][0]))
    assert ours.read_bytes() == theirs.read_bytes()


@pytest.mark.llama
def test_k_quant_loads_and_generates(float_ggufs: dict[str, Path], tmp_path: Path) -> None:
    from pipeline.build import quantize_file
    from pipeline.llamacpp import generate

    out = tmp_path / "q4_k_m.gguf"
    quantize_file(float_ggufs["llama"], out, "q4_k_m")
    assert "Q4_K" in _types(out).values()
    generation = generate(out, "Once upon a time", max_tokens=5)
    assert generation.n_prompt_tokens > 0
    assert generation.n_generated > 0


def test_k_quant_without_the_llama_extra_says_how_to_get_it(
    float_ggufs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from pipeline.build import quantize_file

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what an absent package looks like to `import`
    with pytest.raises(PrepError, match="llama-cpp-python") as err:
        quantize_file(float_ggufs["llama"], tmp_path / "k.gguf", "q4_k_m")
    assert "make install" in str(err.value) and "ic-model-prep[llama]" in str(err.value)
    assert not (tmp_path / "k.gguf").exists()


def test_quantize_cli(float_ggufs: dict[str, Path], tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    out = tmp_path / "cli-q8.gguf"
    command = [sys.executable, "-m", "pipeline", "quantize", str(float_ggufs["gpt2"]), "--out", str(out)]
    done = subprocess.run([*command, "--type", "q8_0", "--json"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["size_after"] == out.stat().st_size < result["size_before"]
    bad = subprocess.run([*command, "--type", "q3_x"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "q3_x" in bad.stderr


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q5_0", "Q4_1", "Q5_1"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_block_major_quantizers_match_gguf_quants_bit_for_bit(qtype: str, dtype: type) -> None:
    from gguf.quants import quantize

    from pipeline.quantize import blocks

    rng = np.random.default_rng(7)
    scales = np.array([[1e-3], [1.0], [1e3], [0.3]]).repeat(16, 0)
    values = (rng.standard_normal((64, 256)) * scales).astype(dtype)
    values[0, :32] = 0  # empty block
    values[1, :64] = np.arange(-32, 32) * 0.5  # exact halves: Q8_0 rounds them away from zero
    values[2, :32] = np.float32(0.5) - np.float32(2**-25)  # just below one half
    values[3, :32] = 0
    values[3, [3, 7]] = [-2, 2]  # +-tie for the largest magnitude: the first one wins in Q4_0/Q5_0
    values[4] = rng.integers(-1, 2, 256)  # ternary: a +-tie in nearly every block
    # (no block of zeros led by -0.0 here: gguf.quants differs from ggml there, see the llama.cpp test)
    ours = getattr(blocks, f"quantize_{qtype.lower()}")(values)
    reference = quantize(values.astype(np.float32), GGMLQuantizationType[qtype])
    assert np.array_equal(ours, reference.reshape(-1))


@pytest.mark.llama
@pytest.mark.parametrize("kernels", KERNEL_NAMES)
@pytest.mark.parametrize("qtype", ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"])
def test_signed_zero_blocks_match_llama_cpp(tmp_path: Path, qtype: str, kernels: str) -> None:
    from safetensors.numpy import load_file, save_file

    from pipeline.llamacpp import quantize_with_llama
    from pipeline.quantize.plan import NATIVE_FILE_TYPES

    model_dir = make_tiny_model("gpt2", tmp_path / "gpt2", seed=2)
    weights = load_file(str(model_dir / "model.safetensors"))
    c_attn = weights["transformer.h.0.attn.c_attn.weight"]
    c_attn[:32, :] = -0.0  # after the Conv1D transpose: every row starts with a block of -0.0
    c_attn[:32, ::2] = 0.0  # ... and every other row with +0.0
    save_file(weights, str(model_dir / "model.safetensors"))
    source = tmp_path / "f32.gguf"
    convert_model(model_dir, source, "f32")
    ours = quantize_gguf(source, tmp_path / "ours.gguf", qtype, kernels=kernels).path
    theirs = tmp_path / "theirs.gguf"
    quantize_with_llama(source, theirs, int(NATIVE_FILE_TYPES[qtype][0]))
    assert ours.read_bytes() == theirs.read_bytes()


@pytest.mark.llama
@pytest.mark.parametrize("source", ["F32", "F16", "BF16"])
def test_ggml_kernels_match_the_numpy_reference(source: str) -> None:
    """The same slab through ggml's quantizers and prep's numpy ones, for every type prep writes itself and
    the Q6_K of output tensors: rare paths included (zeros of both signs, +-ties, exact halves, huge and
    tiny magnitudes)."""
    source_type = GGMLQuantizationType[source]
    values = _q6_k_edge_cases(64, 512, seed=5)
    values[values > 6e4] = 6e4  # within float16's range
    values[values < -6e4] = -6e4
    if source_type == GGMLQuantizationType.F16:
        slab: np.ndarray = values.astype(np.float16)
    elif source_type == GGMLQuantizationType.BF16:
        slab = (values.view(np.uint32) >> 16).astype(np.uint16)
    else:
        slab = values
    ggml, reference = select_kernels("ggml"), select_kernels("numpy")
    for target in ("F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q6_K"):
        target_type = GGMLQuantizationType[target]
        ours = ggml.convert(slab, source_type, target_type)
        assert np.array_equal(ours, reference.convert(slab, source_type, target_type)), target


def test_kernels_default_to_ggml_only_with_the_llama_extra(
    float_ggufs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from pipeline.llamacpp import llama_cpp_installed

    expected = "ggml" if llama_cpp_installed() else "numpy"
    assert quantize_gguf(float_ggufs["gpt2"], tmp_path / "a.gguf", "q8_0").kernels == expected
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what an absent package looks like to `import`
    assert quantize_gguf(float_ggufs["gpt2"], tmp_path / "b.gguf", "q8_0").kernels == "numpy"
    with pytest.raises(PrepError, match="llama-cpp-python") as err:
        quantize_gguf(float_ggufs["gpt2"], tmp_path / "c.gguf", "q8_0", kernels="ggml")
    assert "make install" in str(err.value)
    with pytest.raises(UsageError, match="'fast'"):
        quantize_gguf(float_ggufs["gpt2"], tmp_path / "d.gguf", "q8_0", kernels="fast")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gguf", "b.gguf"]


@pytest.mark.llama
@pytest.mark.parametrize("kernels", KERNEL_NAMES)
def test_output_tensor_beyond_a_float16_scale_is_refused(
    tmp_path: Path, kernels: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """A weight so large that the output tensor's Q6_K scale overflows float16: refused with the file and
    tensor named (llama.cpp refuses it too), and no output file left behind."""
    source = tmp_path / "f32.gguf"
    convert_model(make_tiny_model("llama", tmp_path / "llama", seed=3, dims=WIDE), source, "f32")
    output = {t.name: t for t in GGUFReader(source).tensors}["output.weight"]
    with open(source, "r+b") as handle:
        handle.seek(output.data_offset + 4 * 1000)
        handle.write(np.float32(-1e9).tobytes())
    with pytest.raises(PrepError, match="output.weight") as err:
        quantize_gguf(source, tmp_path / "out.gguf", "q4_0", kernels=kernels)
    assert str(source) in str(err.value)
    assert not (tmp_path / "out.gguf").exists()
