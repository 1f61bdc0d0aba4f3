"""Stage manifests: deterministic, atomic, and a freshness check that notices every relevant change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.manifest import (
    InputRecord,
    artifact_from_file,
    fresh,
    manifest_path,
    read_manifest,
    tool_versions,
    write_manifest,
)

INPUTS = [InputRecord("model.safetensors", "ab" * 32, 1234)]
PARAMS = {"build": {"kind": "convert", "outtype": "f16", "quantize": "q8_0"}}


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    stage_dir = tmp_path / "stage"
    stage_dir.mkdir()
    out = stage_dir / "model.gguf"
    out.write_bytes(b"GGUF" + bytes(1000))
    write_manifest(
        stage_dir,
        stage="build",
        recipe="tiny",
        inputs=INPUTS,
        params=PARAMS,
        tools=tool_versions(),
        artifacts=[artifact_from_file("model", out, {"steps": ["convert f16"]})],
    )
    return stage_dir


def test_manifest_round_trips_and_is_deterministic(stage: Path) -> None:
    first = manifest_path(stage).read_bytes()
    manifest = read_manifest(stage)
    assert manifest is not None
    assert manifest.inputs == tuple(INPUTS)
    artifact = manifest.artifacts(stage)["model"]
    assert artifact.path == stage / "model.gguf"
    assert artifact.size == 1004
    assert artifact.provenance == {"steps": ["convert f16"]}
    assert manifest.tools["prep"] and manifest.tools["gguf"] == "0.19.0"
    write_manifest(
        stage,
        stage="build",
        recipe="tiny",
        inputs=INPUTS,
        params=PARAMS,
        tools=tool_versions(),
        artifacts=list(manifest.artifacts(stage).values()),
    )
    assert manifest_path(stage).read_bytes() == first
    assert sorted(p.name for p in stage.iterdir()) == ["manifest.json", "model.gguf"]


def test_fresh_when_nothing_changed(stage: Path) -> None:
    assert fresh(stage, inputs=INPUTS, params=PARAMS, tools=tool_versions()).is_fresh


@pytest.mark.parametrize(
    "change",
    ["input_sha", "input_size", "params", "tools", "output_missing", "output_resized"],
)
def test_not_fresh_after_a_change(stage: Path, change: str) -> None:
    inputs, params, tools = list(INPUTS), dict(PARAMS), tool_versions()
    if change == "input_sha":
        inputs = [InputRecord("model.safetensors", "cd" * 32, 1234)]
    elif change == "input_size":
        inputs = [InputRecord("model.safetensors", "ab" * 32, 1235)]
    elif change == "params":
        params = {"build": {"kind": "convert", "outtype": "f16", "quantize": "q4_0"}}
    elif change == "tools":
        tools = {**tools, "gguf": "0.20.0"}
    elif change == "output_missing":
        (stage / "model.gguf").unlink()
    elif change == "output_resized":
        (stage / "model.gguf").write_bytes(b"GGUF")
    freshness = fresh(stage, inputs=inputs, params=params, tools=tools)
    assert not freshness.is_fresh
    expected = {
        "input_sha": "inputs changed: model.safetensors",
        "input_size": "inputs changed: model.safetensors",
        "params": "parameters changed: build",
        "tools": "tool versions changed: gguf",
        "output_missing": "output model.gguf is missing",
        "output_resized": "output model.gguf is missing",
    }
    assert freshness.reason.startswith(expected[change]), freshness.reason


def test_same_size_edit_is_caught_by_rehash_after_mtime_change(stage: Path) -> None:
    out = stage / "model.gguf"
    out.write_bytes(b"XXXX" + bytes(1000))
    assert fresh(stage, inputs=INPUTS, params=PARAMS, tools=tool_versions()).is_fresh is False


def test_touched_but_identical_output_stays_fresh_and_mtime_is_updated(stage: Path) -> None:
    out = stage / "model.gguf"
    stat = out.stat()
    os.utime(out, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert fresh(stage, inputs=INPUTS, params=PARAMS, tools=tool_versions()).is_fresh
    manifest = read_manifest(stage)
    assert manifest is not None and manifest.outputs[0].mtime_ns == out.stat().st_mtime_ns


def test_unreadable_manifest_means_rebuild(stage: Path) -> None:
    manifest_path(stage).write_text("{not json")
    assert fresh(stage, inputs=INPUTS, params=PARAMS, tools=tool_versions()).is_fresh is False
