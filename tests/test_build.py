"""The build stage on the shipped recipes fetched from HubSim: convert, trim, passthrough, skip, fit."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from gguf import GGUFReader

from pipeline.build import build_recipe
from pipeline.errors import PrepError
from pipeline.fit import check_fit
from pipeline.hub import fetch_recipe
from pipeline.manifest import Artifact
from pipeline.recipes import Recipe, load_recipe
from pipeline.sha import sha256_file
from pipeline.workspace import Workspace
from tests.hubsim.world import TinyWorld
from tests.test_trim import loader_tensor_names


def _build(world: TinyWorld, name: str, tmp_path: Path, **build_changes: object):
    recipe = load_recipe(name, recipes_dir=world.recipes_dir)
    if build_changes:
        recipe = replace(recipe, build=replace(recipe.build, **build_changes))
    fetched = fetch_recipe(recipe, progress=False)
    return recipe, fetched, build_recipe(recipe, fetched, Workspace(tmp_path / "work"))


def test_convert_and_quantize_then_skip_when_unchanged(tiny_world: TinyWorld, tmp_path: Path) -> None:
    recipe, fetched, first = _build(tiny_world, "smollm2-135m", tmp_path)
    assert not first.skipped
    model = first.artifacts["model"]
    assert model.sha256 == sha256_file(model.path)
    reader = GGUFReader(model.path)
    assert {t.tensor_type.name for t in reader.tensors} == {"F32", "Q8_0"}
    assert model.provenance["steps"] == ["convert f16", "quantize q8_0"]
    assert model.provenance["sources"][0]["repo"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert [p.name for p in first.stage_dir.iterdir() if p.suffix == ".gguf"] == ["model.gguf"]
    assert first.fit.ok

    mtime = model.path.stat().st_mtime_ns
    second = build_recipe(recipe, fetched, Workspace(tmp_path / "work"))
    assert second.skipped
    assert second.artifacts["model"].sha256 == model.sha256
    assert model.path.stat().st_mtime_ns == mtime

    changed = replace(recipe, build=replace(recipe.build, quantize="q4_0"))
    third = build_recipe(changed, fetched, Workspace(tmp_path / "work"))
    assert not third.skipped
    assert third.artifacts["model"].sha256 != model.sha256


def test_trim_recipe_builds_the_three_gpt2_files(tiny_world: TinyWorld, tmp_path: Path) -> None:
    _, _, result = _build(tiny_world, "gpt2-open-instruct", tmp_path)
    assert set(result.artifacts) == {"safetensors", "config", "tokenizer"}
    from safetensors import safe_open

    with safe_open(str(result.artifacts["safetensors"].path), framework="numpy") as f:
        n_layer = json.loads(result.artifacts["config"].path.read_text())["n_layer"]
        assert set(f.keys()) == loader_tensor_names(n_layer)
    assert result.fit.heap_bytes > result.artifacts["safetensors"].size


def test_passthrough_uses_the_fetched_file(tiny_world: TinyWorld, tmp_path: Path) -> None:
    _, fetched, result = _build(tiny_world, "qwen2.5-0.5b", tmp_path)
    model = result.artifacts["model"]
    source = fetched.files["qwen2.5-0.5b-instruct-q8_0.gguf"]
    assert (model.path, model.sha256) == (source.path, source.sha256)
    assert result.fit.ok


def _artifact(path: Path, role: str = "model") -> Artifact:
    return Artifact(role, path, path.stat().st_size, sha256_file(path), {})


def test_preflight_refuses_too_big_a_file_with_the_numbers(tmp_path: Path) -> None:
    from tests.hubsim.world import make_small_gguf

    big = make_small_gguf("qwen2", tmp_path / "big.gguf")
    with open(big, "r+b") as f:
        f.truncate(1_800_000_000)  # sparse: over the profile's 1,750,000,000-byte load limit
    with pytest.raises(PrepError, match=r"1,800,000,000 bytes.*1,750,000,000") as err:
        check_fit("llama_cpp", {"model": Artifact("model", big, 1_800_000_000, "0" * 64, {})})
    assert "quantize further" in str(err.value)


def test_preflight_refuses_an_unknown_architecture(tmp_path: Path) -> None:
    from tests.hubsim.world import make_small_gguf

    path = make_small_gguf("mamba", tmp_path / "m.gguf")
    with pytest.raises(PrepError, match=r"architecture 'mamba'"):
        check_fit("llama_cpp", {"model": _artifact(path)})


def test_build_cli_reports_skip_as_json(tiny_world: TinyWorld, tmp_path: Path) -> None:
    recipe_path = tiny_world.recipes_dir / "gpt2-open-instruct.toml"
    command = [sys.executable, "-m", "pipeline", "build", str(recipe_path), "--json"]
    first = subprocess.run(command, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(command, capture_output=True, text=True, check=False)
    result = json.loads(second.stdout.strip().splitlines()[-1])
    assert result["event"] == "result" and result["skipped"] is True
    assert set(result["artifacts"]) == {"safetensors", "config", "tokenizer"}
    human = subprocess.run(command[:-1], capture_output=True, text=True, check=False)
    assert "skipped: inputs unchanged" in human.stdout


def test_build_cli_smoke_on_gpt2(tiny_world: TinyWorld) -> None:
    recipe_path = tiny_world.recipes_dir / "gpt2-open-instruct.toml"
    command = [sys.executable, "-m", "pipeline", "build", str(recipe_path), "--smoke", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["smoke"]["passed"] and result["smoke"]["n_generated"] > 0


def _recipe(world: TinyWorld, name: str) -> Recipe:
    return load_recipe(name, recipes_dir=world.recipes_dir)


@pytest.mark.llama
def test_local_smoke_generates_from_the_built_gguf(tiny_world: TinyWorld, tmp_path: Path) -> None:
    from pipeline.smoke_local import smoke_local

    recipe, _, result = _build(tiny_world, "smollm2-135m", tmp_path)
    smoke = replace(recipe.target.smoke, max_tokens=4, expect=".")
    answer = smoke_local(recipe.target.kind, result.artifacts, smoke)
    assert answer.passed and answer.n_generated > 0


def test_passthrough_validates_llama2c_files(tiny_world: TinyWorld, tmp_path: Path) -> None:
    _, _, result = _build(tiny_world, "stories15m", tmp_path)
    assert set(result.artifacts) == {"model", "tokenizer"}
    assert result.fit.ok


def test_build_refuses_a_file_that_is_not_what_it_claims(tmp_path: Path) -> None:
    from pipeline.build import validate_artifact

    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF" + bytes(10))
    with pytest.raises(PrepError, match="model.gguf"):
        validate_artifact(_artifact(fake))


@pytest.mark.llama
def test_k_quant_recipe_builds_through_llama_cpp(tiny_world: TinyWorld, tmp_path: Path) -> None:
    from pipeline.manifest import read_manifest

    _, _, result = _build(tiny_world, "smollm2-135m", tmp_path, quantize="q4_k_m")
    types = {t.tensor_type.name for t in GGUFReader(result.artifacts["model"].path).tensors}
    assert "Q4_K" in types or "Q5_0" in types  # tiny rows fall back from K-quants as llama.cpp decides
    manifest = read_manifest(result.stage_dir)
    assert manifest is not None and manifest.tools["llama-cpp-python"] == "0.3.36"
