"""A Hugging Face checkpoint directory: config.json plus one or more memory-mapped safetensors files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import InvalidFile
from pipeline.formats.safetensors import SafetensorsTensor, read_safetensors_header

INDEX_NAME = "model.safetensors.index.json"
NATIVE_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2")}


@dataclass(frozen=True)
class TensorRef:
    """Where one tensor's bytes are: a file and a byte range."""

    path: Path
    entry: SafetensorsTensor


class HfCheckpoint:
    """Reads config.json and indexes tensors across `model*.safetensors` (sharded via the index file)."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        if not model_dir.is_dir():
            raise InvalidFile(f"{model_dir}: not a directory; expected a Hugging Face model directory")
        self.config = load_json(model_dir / "config.json")
        self.tensors = self._index_tensors()

    def _part_names(self) -> list[str]:
        index_path = self.model_dir / INDEX_NAME
        if index_path.is_file():
            weight_map = load_json(index_path).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise InvalidFile(f"{index_path}: no 'weight_map' object mapping tensor names to files")
            return sorted(set(weight_map.values()))
        parts = sorted(p.name for p in self.model_dir.glob("model*.safetensors"))
        if not parts:
            raise InvalidFile(
                f"{self.model_dir}: no model*.safetensors files",
                hint="only safetensors checkpoints are converted; PyTorch .bin files are not read",
            )
        return parts

    def _index_tensors(self) -> dict[str, TensorRef]:
        tensors: dict[str, TensorRef] = {}
        for part in self._part_names():
            path = self.model_dir / part
            if not path.is_file():
                raise InvalidFile(f"{path}: listed in {INDEX_NAME} but missing", hint="fetch all shards")
            for entry in read_safetensors_header(path).tensors:
                tensors[entry.name] = TensorRef(path, entry)
        index_path = self.model_dir / INDEX_NAME
        if index_path.is_file():
            listed = set(load_json(index_path)["weight_map"])
            if missing := sorted(listed - tensors.keys()):
                raise InvalidFile(f"{index_path}: tensors listed but in no shard: {', '.join(missing[:5])}")
        return tensors

    def view(self, name: str) -> np.ndarray:
        """The tensor memory-mapped in its stored dtype (BF16 as uint16 bits); nothing is read yet."""
        ref = self.tensors[name]
        entry = ref.entry
        if entry.dtype in NATIVE_DTYPES:
            dtype = NATIVE_DTYPES[entry.dtype]
        elif entry.dtype == "BF16":
            dtype = np.dtype("<u2")
        else:
            raise InvalidFile(
                f"{ref.path}: tensor {name!r} has dtype {entry.dtype}; only F32, F16 and BF16 are converted"
            )
        if entry.nbytes == 0:
            return np.empty(entry.shape, dtype=dtype)
        return np.memmap(ref.path, dtype=dtype, mode="r", offset=entry.start, shape=entry.shape)


def as_float(chunk: np.ndarray) -> np.ndarray:
    """F32/F16 as stored; BF16 bits (uint16) widened to F32 exactly, as llama.cpp does."""
    if chunk.dtype == np.uint16:
        return (chunk.astype(np.uint32) << 16).view(np.float32)
    return np.asarray(chunk)


def load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise InvalidFile(f"{path}: missing") from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidFile(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise InvalidFile(f"{path}: expected a JSON object")
    return data
