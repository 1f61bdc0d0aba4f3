"""A tiny copy of the shipped recipes' world: their Hub repos filled with generated tiny models.

`build_tiny_world(sim, root)` serves, under the same repo ids and file names the shipped recipes use,
tiny generated files (tests/tinymodels.py checkpoints, llama2.c files, small GGUFs), and writes
recipes/<name>.toml copies without the real pins and with URL sources pointing at the emulator.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from tests.hubsim.server import HubSim
from tests.tinymodels import make_llama2c, make_tiny_model

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

PROJECT = Path(__file__).resolve().parent.parent.parent
GgufMaker = Callable[[str, Path], Path]


@dataclass
class TinyWorld:
    recipes_dir: Path
    commits: dict[str, str] = field(default_factory=dict)


def make_small_gguf(arch: str, out: Path) -> Path:
    """A small valid GGUF file (metadata and one tensor); enough for fetch and format checks."""
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_name(f"tiny-{arch}")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.arange(64, dtype=np.float32).reshape(8, 8))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def build_tiny_world(
    sim: HubSim,
    root: Path,
    *,
    recipes_dir: Path = PROJECT / "recipes",
    gguf_maker: GgufMaker = make_small_gguf,
) -> TinyWorld:
    """Serves tiny stand-ins for every repo and URL the recipes in `recipes_dir` use."""
    root.mkdir(parents=True, exist_ok=True)
    out_recipes = root / "recipes"
    out_recipes.mkdir(exist_ok=True)
    world = TinyWorld(out_recipes)
    for recipe_path in sorted(recipes_dir.glob("*.toml")):
        data = tomllib.loads(recipe_path.read_text())
        sources = data["source"] if isinstance(data["source"], list) else [data["source"]]
        kit = _Kit(root / "files" / recipe_path.stem, data, gguf_maker)
        for source in sources:
            if "url" in source:
                name = source.get("filename") or source["url"].rsplit("/", 1)[-1]
                content = kit.content(name)
                source["url"] = sim.add_plain_file(f"{recipe_path.stem}/{name}", content)
                source["sha256"] = hashlib.sha256(content).hexdigest()
                source["size"] = len(content)
            else:
                files = {pattern: kit.content(pattern) for pattern in source["files"] if "*" not in pattern}
                world.commits[source["repo"]] = sim.add_repo(source["repo"], files)
                source.pop("sha256", None)
                source.pop("size", None)
        (out_recipes / recipe_path.name).write_text(dump_toml(data))
    return world


class _Kit:
    """Makes the bytes of one named file of a recipe, from generators chosen by the recipe's target."""

    def __init__(self, workdir: Path, recipe: dict[str, Any], gguf_maker: GgufMaker) -> None:
        self.workdir = workdir
        self.recipe = recipe
        self.gguf_maker = gguf_maker
        self._checkpoint: Path | None = None
        self._llama2c: tuple[Path, Path] | None = None

    def content(self, name: str) -> bytes:
        if name.endswith(".gguf"):
            arch = "qwen3" if "qwen3" in name.lower() else "qwen2"
            return self.gguf_maker(arch, self._dir("gguf") / name).read_bytes()
        if self.recipe["target"]["kind"] == "icpp_llama2":
            model, tokenizer = self._llama2c_files()
            return (tokenizer if fnmatch.fnmatch(name, "tokenizer*") else model).read_bytes()
        checkpoint = self._checkpoint_dir()
        if (checkpoint / name).exists():
            return (checkpoint / name).read_bytes()
        if name == "special_tokens_map.json":
            return json.dumps({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}).encode()
        raise ValueError(f"the tiny world has no generator for {name!r}")

    def _dir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _checkpoint_dir(self) -> Path:
        if self._checkpoint is None:
            arch = "gpt2" if self.recipe["target"]["kind"] == "gpt2" else "llama"
            self._checkpoint = make_tiny_model(arch, self._dir(f"hf-{arch}"))
        return self._checkpoint

    def _llama2c_files(self) -> tuple[Path, Path]:
        if self._llama2c is None:
            self._llama2c = make_llama2c(self._dir("llama2c"))
        return self._llama2c


def dump_toml(data: dict[str, Any]) -> str:
    """TOML for recipe-shaped data: strings, ints, lists of strings, tables and arrays of tables."""
    lines: list[str] = []
    _dump_table(data, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _dump_table(table: dict[str, Any], path: list[str], lines: list[str]) -> None:
    def is_table(v: Any) -> bool:
        return isinstance(v, dict)

    def is_table_array(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(i, dict) for i in v)

    for key, value in table.items():
        if not is_table(value) and not is_table_array(value):
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        if is_table(value):
            lines.extend(["", f"[{'.'.join(_key(k) for k in [*path, key])}]"])
            _dump_table(value, [*path, key], lines)
        elif is_table_array(value):
            for item in value:
                lines.extend(["", f"[[{'.'.join(_key(k) for k in [*path, key])}]]"])
                _dump_table(item, [*path, key], lines)


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")
