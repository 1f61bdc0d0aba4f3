"""The build stage: fetched files -> the artifacts a target canister loads, validated, fitted, recorded.

passthrough: the fetched files are the artifacts (no copy). convert: HF checkpoint -> GGUF, then an
optional quantization (our own for F16/BF16/Q8_0/Q4_x/Q5_x, llama.cpp's for K-quants). trim_gpt2: the
GPT-2 checkpoint cut down to what the candle loader reads. The stage skips itself when its manifest says
the same inputs, parameters and tools produced outputs that are still on disk unchanged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.convert.converter import convert_model
from pipeline.errors import PrepError
from pipeline.events import EventSink
from pipeline.fit import FitReport, check_fit
from pipeline.formats.detect import inspect_file
from pipeline.hub import FetchedFile, FetchResult
from pipeline.llamacpp import DISTRIBUTION as LLAMA_DISTRIBUTION
from pipeline.llamacpp import quantize_with_llama
from pipeline.manifest import Artifact, InputRecord, artifact_from_file, fresh, tool_versions, write_manifest
from pipeline.quantize import LLAMA_FILE_TYPES, quantize_gguf
from pipeline.recipes import Recipe
from pipeline.trim import trim_gpt2
from pipeline.workspace import Workspace

STAGE = "build"
MODEL_FILE = "model.gguf"
# llama.cpp's quantizer and ours both start from a float GGUF; f16 is what llama.cpp's own flow uses.
DEFAULT_QUANTIZE_FROM = "f16"


@dataclass(frozen=True)
class BuildResult:
    artifacts: dict[str, Artifact]
    skipped: bool
    stage_dir: Path
    fit: FitReport
    reason: str  # why the build was skipped or ran (pipeline.manifest.fresh)


def build_recipe(
    recipe: Recipe, fetched: FetchResult, workspace: Workspace, *, on_event: EventSink | None = None
) -> BuildResult:
    """Builds (or confirms unchanged) the recipe's artifacts, then checks they fit the target canister."""
    emit = on_event or (lambda _event: None)
    stage_dir = workspace.stage_dir(recipe.name, STAGE)
    inputs = [
        InputRecord(f.name, f.sha256, f.size) for f in sorted(fetched.files.values(), key=lambda f: f.name)
    ]
    params = build_params(recipe)
    tools = tool_versions(*_extra_tools(recipe))
    freshness = fresh(stage_dir, inputs=inputs, params=params, tools=tools)
    if freshness.manifest is not None:
        artifacts = freshness.manifest.artifacts(stage_dir)
        emit({"event": "build_skipped", "reason": freshness.reason, "stage_dir": str(stage_dir)})
        return BuildResult(
            artifacts, True, stage_dir, check_fit(recipe.target.kind, artifacts), freshness.reason
        )
    sources = [_source_record(fetched.files[name]) for name in sorted(fetched.files)]
    provenance = {"sources": sources, "build": params}
    artifacts = _build(recipe, fetched, stage_dir, provenance, emit)
    for artifact in artifacts.values():
        validate_artifact(artifact)
    write_manifest(
        stage_dir,
        stage=STAGE,
        recipe=recipe.name,
        inputs=inputs,
        params=params,
        tools=tools,
        artifacts=list(artifacts.values()),
    )
    fit = check_fit(recipe.target.kind, artifacts)
    return BuildResult(artifacts, False, stage_dir, fit, freshness.reason)


def build_params(recipe: Recipe) -> dict[str, Any]:
    """Everything about the recipe that changes the built bytes (and so invalidates a previous build)."""
    return {"build": asdict(recipe.build), "target_kind": recipe.target.kind}


def validate_artifact(artifact: Artifact) -> None:
    """Structural check of a built file by its content (header, offsets, sizes), without loading weights."""
    if artifact.path.name.endswith(".json") and not artifact.path.name.endswith("tokenizer.json"):
        try:
            json.loads(artifact.path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise PrepError(f"{artifact.path}: not valid JSON ({err})") from err
        return
    inspect_file(artifact.path)


def _extra_tools(recipe: Recipe) -> tuple[str, ...]:
    quantize = (recipe.build.quantize or "").lower()
    return (LLAMA_DISTRIBUTION,) if quantize in LLAMA_FILE_TYPES else ()


def _source_record(fetched: FetchedFile) -> dict[str, Any]:
    return {
        "name": fetched.name,
        "sha256": fetched.sha256,
        "size": fetched.size,
        "repo": fetched.repo,
        "commit": fetched.commit,
        "url": fetched.url,
    }


def _build(
    recipe: Recipe, fetched: FetchResult, stage_dir: Path, provenance: dict[str, Any], emit: EventSink
) -> dict[str, Artifact]:
    kind = recipe.build.kind
    if kind == "passthrough":
        return _passthrough(recipe, fetched, provenance)
    if kind == "convert":
        return {"model": _convert(recipe, _model_dir(fetched), stage_dir, provenance, emit)}
    if kind == "trim_gpt2":
        return _trim(recipe, _model_dir(fetched), stage_dir, provenance, emit)
    raise PrepError(f"{recipe.path}: build kind {kind!r} is not known")


def _passthrough(recipe: Recipe, fetched: FetchResult, provenance: dict[str, Any]) -> dict[str, Artifact]:
    artifacts = {}
    for role, name in (recipe.build.files or {}).items():
        file = fetched.files.get(name)
        if file is None:
            raise PrepError(
                f"{recipe.path}: build.files.{role} names {name!r}, which was not fetched",
                hint=f"fetched: {', '.join(sorted(fetched.files))}",
            )
        artifacts[role] = Artifact(
            role, file.path, file.size, file.sha256, {**provenance, "steps": ["passthrough"]}
        )
    return artifacts


def _model_dir(fetched: FetchResult) -> Path:
    """The directory holding the fetched checkpoint (where config.json is)."""
    config = next((f for f in fetched.files.values() if Path(f.name).name == "config.json"), None)
    if config is None:
        raise PrepError(
            "the recipe's sources fetched no config.json; converting needs a Hugging Face checkpoint"
        )
    return config.path.parent


def _convert(
    recipe: Recipe, model_dir: Path, stage_dir: Path, provenance: dict[str, Any], emit: EventSink
) -> Artifact:
    spec = recipe.build
    out = stage_dir / MODEL_FILE
    if not spec.quantize:
        outtype = spec.outtype or DEFAULT_QUANTIZE_FROM
        emit({"event": "convert", "outtype": outtype})
        convert_model(model_dir, out, outtype)
        return artifact_from_file("model", out, {**provenance, "steps": [f"convert {outtype}"]})
    outtype = spec.outtype or DEFAULT_QUANTIZE_FROM
    intermediate = stage_dir / f"convert-{outtype}.gguf"
    emit({"event": "convert", "outtype": outtype})
    convert_model(model_dir, intermediate, outtype)
    quantize = spec.quantize.lower()
    emit({"event": "quantize", "type": quantize})
    try:
        quantize_file(intermediate, out, quantize)
    finally:
        intermediate.unlink(missing_ok=True)
    steps = [f"convert {outtype}", f"quantize {quantize}"]
    return artifact_from_file("model", out, {**provenance, "steps": steps})


def quantize_file(source: Path, dest: Path, type_name: str) -> None:
    """Quantizes a float GGUF: our own quantizer where it can, llama.cpp's for K-quants."""
    name = type_name.lower()
    if name in LLAMA_FILE_TYPES:
        quantize_with_llama(source, dest, int(LLAMA_FILE_TYPES[name]))
    else:
        quantize_gguf(source, dest, name)


def _trim(
    recipe: Recipe, model_dir: Path, stage_dir: Path, provenance: dict[str, Any], emit: EventSink
) -> dict[str, Artifact]:
    dtype = recipe.build.dtype
    emit({"event": "trim", "dtype": dtype})
    result = trim_gpt2(model_dir, stage_dir / "gpt2", dtype)
    emit({"event": "trimmed", "size_before": result.size_before, "size_after": result.size_after})
    record = {**provenance, "steps": [f"trim_gpt2 {dtype or 'as stored'}"]}
    return {
        "safetensors": artifact_from_file("safetensors", result.safetensors, record),
        "config": artifact_from_file("config", result.config, record),
        "tokenizer": artifact_from_file("tokenizer", result.tokenizer, record),
    }
