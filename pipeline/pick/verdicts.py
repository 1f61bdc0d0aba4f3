"""Verdicts on a repo's candidate model files for a canister kind, and what judging them needs.

- fits: loads as is, within the default wasm_memory_limit;
- too big: over the most one load message may read (IC0524), or over the 3.75 GiB wasm32 heap;
- needs wasm_memory_limit: fits once the canister's wasm_memory_limit is raised above the 3 GiB default;
- needs conversion: safetensors that prep converts (and quantizes) into a GGUF that fits;
- unknown architecture: the canister's llama.cpp (or prep's converter) does not know the architecture;
- unusable: not a loadable model file (split GGUF part, bad header, missing tokenizer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import PrepError
from pipeline.hub.hf import HubClient, RepoSnapshot
from pipeline.pick.headers import RangeReader
from pipeline.pick.heap import DEFAULT_WASM_MEMORY_LIMIT, RAISED_WASM_MEMORY_LIMIT, ModelShape, gib
from pipeline.targets.profile import TargetProfile

FITS = "fits"
TOO_BIG = "too big"
NEEDS_MEMORY_LIMIT = "needs wasm_memory_limit"
NEEDS_CONVERSION = "needs conversion"
UNKNOWN_ARCHITECTURE = "unknown architecture"
UNUSABLE = "unusable"
LOADABLE = (FITS, NEEDS_MEMORY_LIMIT, NEEDS_CONVERSION)


@dataclass(frozen=True)
class Candidate:
    name: str  # a file, or the first safetensors shard standing for the set
    files: tuple[str, ...]  # the repo files a recipe for it fetches
    size: int  # bytes of those files in the repo
    verdict: str
    detail: str  # the verdict's reason, with numbers
    quant: str | None = None
    architecture: str | None = None
    context_length: int | None = None
    tensor_types: dict[str, int] = field(default_factory=dict)
    load_size: int | None = None  # bytes the canister loads (estimated after conversion or trim)
    heap: int | None = None
    memory_limit: int | None = None  # wasm_memory_limit to set, when above the default
    header_bytes: int = 0  # fetched by range requests to learn all this
    header_requests: int = 0
    build: dict[str, Any] | None = None  # the recipe's [build] table
    shape: ModelShape | None = field(default=None, repr=False)
    chat_template: str | None = field(default=None, repr=False)
    template_source: str = ""
    eos_token: str = ""
    extra_sources: tuple[dict[str, Any], ...] = ()  # URL sources the recipe needs besides the repo

    @property
    def loadable(self) -> bool:
        return self.verdict in LOADABLE

    def summary(self) -> dict[str, Any]:
        keys = ("name", "files", "size", "verdict", "detail", "quant", "architecture", "context_length")
        keys += ("tensor_types", "load_size", "heap", "memory_limit", "header_bytes", "header_requests")
        return {k: getattr(self, k) for k in keys}


@dataclass
class RepoContext:
    """What evaluating one repo needs: the Hub client, the snapshot and the canister kind's profile."""

    client: HubClient
    snapshot: RepoSnapshot
    profile: TargetProfile
    _json_cache: dict[str, dict[str, Any]] = field(default_factory=dict)

    def reader(self, path: str) -> RangeReader:
        return RangeReader(self.client, self.snapshot.repo, self.snapshot.commit, self.snapshot.files[path])

    def small_json(self, path: str) -> dict[str, Any]:
        """A small JSON file of the repo (config.json, tokenizer_config.json), downloaded into the cache."""
        if path not in self._json_cache:
            local = self.client.download(self.snapshot.repo, path, self.snapshot.commit, progress=False)
            try:
                data = json.loads(local.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise PrepError(f"{self.snapshot.repo}/{path} is not valid JSON: {err}") from err
            if not isinstance(data, dict):
                raise PrepError(f"{self.snapshot.repo}/{path} is a JSON {type(data).__name__}, not an object")
            self._json_cache[path] = data
        return self._json_cache[path]

    def has(self, path: str) -> bool:
        return path in self.snapshot.files


def heap_verdict(heap: int) -> tuple[str, str]:
    if heap > RAISED_WASM_MEMORY_LIMIT:
        return (
            TOO_BIG,
            f"needs ~{gib(heap)} of wasm heap, over the {gib(RAISED_WASM_MEMORY_LIMIT)} wasm32 ceiling",
        )
    if heap > DEFAULT_WASM_MEMORY_LIMIT:
        return NEEDS_MEMORY_LIMIT, (
            f"needs ~{gib(heap)} of wasm heap: raise wasm_memory_limit above the "
            f"{gib(DEFAULT_WASM_MEMORY_LIMIT)} default (to {RAISED_WASM_MEMORY_LIMIT:,})"
        )
    return (
        FITS,
        f"needs ~{gib(heap)} of wasm heap (default wasm_memory_limit {gib(DEFAULT_WASM_MEMORY_LIMIT)})",
    )


def memory_limit(heap: int) -> int | None:
    return RAISED_WASM_MEMORY_LIMIT if DEFAULT_WASM_MEMORY_LIMIT < heap <= RAISED_WASM_MEMORY_LIMIT else None
