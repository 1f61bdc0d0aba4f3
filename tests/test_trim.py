"""GPT-2 trimming for the candle canister: exact tensor set, same logits, config checks, atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from pipeline.errors import PrepError
from pipeline.trim import read_gpt2_config, trim_gpt2
from pipeline.trim.forward import Gpt2Numpy
from tests.tinymodels import make_tiny_model


def loader_tensor_names(n_layer: int) -> set[str]:
    """The candle GPT-2 loader's reads (FACTS.md 1c): wte, wpe, ln_f and six weight+bias pairs per layer."""
    names = {
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "transformer.ln_f.weight",
        "transformer.ln_f.bias",
    }
    for i in range(n_layer):
        for part in ("ln_1", "ln_2", "attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            names |= {f"transformer.h.{i}.{part}.weight", f"transformer.h.{i}.{part}.bias"}
    return names


@pytest.fixture
def gpt2_dir(tmp_path: Path) -> Path:
    return make_tiny_model("gpt2", tmp_path / "gpt2", seed=3)


def _tensors(path: Path) -> dict[str, np.ndarray]:
    with safe_open(str(path), framework="numpy") as f:
        return {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118


def test_loader_set_has_148_tensors_for_12_layers() -> None:
    assert len(loader_tensor_names(12)) == 148


def test_trim_keeps_exactly_the_loader_tensors(gpt2_dir: Path, tmp_path: Path) -> None:
    result = trim_gpt2(gpt2_dir, tmp_path / "out", "f16")
    tensors = _tensors(result.safetensors)
    config = json.loads((gpt2_dir / "config.json").read_text())
    assert set(tensors) == loader_tensor_names(config["n_layer"])
    assert {t.dtype for t in tensors.values()} == {np.dtype(np.float16)}
    assert any(name.endswith("attn.bias") for name in result.tensors_dropped)
    assert "lm_head.weight" in result.tensors_dropped
    assert result.size_after < result.size_before / 2
    assert (tmp_path / "out" / "tokenizer.json").read_bytes() == (gpt2_dir / "tokenizer.json").read_bytes()
    assert (tmp_path / "out" / "config.json").read_bytes() == (gpt2_dir / "config.json").read_bytes()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_trimmed_f16_gives_the_same_logits(gpt2_dir: Path, tmp_path: Path) -> None:
    result = trim_gpt2(gpt2_dir, tmp_path / "out", "f16")
    config = read_gpt2_config(gpt2_dir / "config.json")
    ids = [5, 17, 42, 99, 3, 250, 7]
    original = Gpt2Numpy(gpt2_dir / "model.safetensors", config).forward(ids)
    trimmed = Gpt2Numpy(result.safetensors, config).forward(ids)
    assert original.shape == (len(ids), config.vocab_size)
    scale = float(np.abs(original).max())
    assert np.allclose(trimmed, original, rtol=0, atol=2e-3 * scale)
    assert np.array_equal(trimmed.argmax(axis=-1), original.argmax(axis=-1))


def test_trim_f32_is_exact_and_adds_missing_prefix(gpt2_dir: Path, tmp_path: Path) -> None:
    bare_dir = tmp_path / "bare"
    bare_dir.mkdir()
    source = _tensors(gpt2_dir / "model.safetensors")
    from safetensors.numpy import save_file

    save_file(
        {name.removeprefix("transformer."): values for name, values in source.items()},
        str(bare_dir / "model.safetensors"),
    )
    for name in ("config.json", "tokenizer.json"):
        (bare_dir / name).write_bytes((gpt2_dir / name).read_bytes())
    result = trim_gpt2(bare_dir, tmp_path / "out", "f32")
    trimmed = _tensors(result.safetensors)
    assert set(trimmed) == loader_tensor_names(2)
    for name, values in trimmed.items():
        assert np.array_equal(values, source[name])


@pytest.mark.parametrize(
    ("field", "value"),
    [("n_inner", 100), ("vocab_size", None), ("n_head", 0), ("layer_norm_epsilon", "small")],
)
def test_bad_config_names_the_field(gpt2_dir: Path, tmp_path: Path, field: str, value: object) -> None:
    config = json.loads((gpt2_dir / "config.json").read_text())
    config[field] = value
    (gpt2_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(PrepError, match=field):
        trim_gpt2(gpt2_dir, tmp_path / "out", "f16")


def test_missing_tensor_is_named(gpt2_dir: Path, tmp_path: Path) -> None:
    config = json.loads((gpt2_dir / "config.json").read_text())
    config["n_layer"] = 3
    (gpt2_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(PrepError, match=r"transformer\.h\.2\.ln_1\.weight"):
        trim_gpt2(gpt2_dir, tmp_path / "out", "f16")
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_cached_generation_matches_full_forward(gpt2_dir: Path) -> None:
    config = read_gpt2_config(gpt2_dir / "config.json")
    model = Gpt2Numpy(gpt2_dir / "model.safetensors", config)
    prompt = [5, 17, 42]
    generated = model.generate(prompt, max_tokens=4)
    ids = list(prompt)
    for _ in generated:
        ids.append(int(np.argmax(model.forward(ids)[-1])))
    assert ids[len(prompt) :] == generated


def test_trim_cli(gpt2_dir: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "pipeline",
        "trim",
        str(gpt2_dir),
        "--out",
        str(tmp_path / "t"),
        "--json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["tensors_kept"] == len(loader_tensor_names(2))
    assert result["size_after"] < result["size_before"]
