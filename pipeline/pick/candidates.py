"""A repo's candidate model files for one canister kind, each with a verdict, and the rule that picks one.

Verdicts:
- fits: loads as is, within the default wasm_memory_limit;
- too big: over the most one load message may read (IC0524), or over the 3.75 GiB wasm32 heap;
- needs wasm_memory_limit: fits once the canister's wasm_memory_limit is raised above the 3 GiB default;
- needs conversion: safetensors that prep converts (and quantizes) into a GGUF that fits;
- unknown architecture: the canister's llama.cpp (or prep's converter) does not know the architecture;
- unusable: not a loadable model file (split GGUF part, bad header, missing tokenizer).
Only headers are read (HTTP range requests) plus the small JSON files conversion needs.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gguf

from pipeline.convert.architectures import ARCHITECTURES
from pipeline.errors import PrepError
from pipeline.formats.gguf import ArrayValue, GgufInfo
from pipeline.hub.hf import HubClient, RepoSnapshot
from pipeline.pick.headers import (
    RangeReader,
    UnreadableHeader,
    read_gguf_header,
    read_llama2c_header,
    read_safetensors_header,
)
from pipeline.pick.heap import (
    DEFAULT_WASM_MEMORY_LIMIT,
    RAISED_WASM_MEMORY_LIMIT,
    ModelShape,
    gib,
    llama_cpp_heap,
)
from pipeline.pick.template import special_token, template_from_tokenizer_config
from pipeline.targets.profile import TargetProfile
from pipeline.trim.gpt2 import read_gpt2_config

FITS = "fits"
TOO_BIG = "too big"
NEEDS_MEMORY_LIMIT = "needs wasm_memory_limit"
NEEDS_CONVERSION = "needs conversion"
UNKNOWN_ARCHITECTURE = "unknown architecture"
UNUSABLE = "unusable"
LOADABLE = (FITS, NEEDS_MEMORY_LIMIT, NEEDS_CONVERSION)

# The pick rule: the largest quantization that fits, in this order; then any other quantized type, the
# larger first; float types last (they cost twice Q8_0's instructions per token for no visible gain).
PREFERRED_QUANTS = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M")
_FLOAT_TYPES = ("F32", "F16", "BF16")
# Conversion targets in preference order, with llama.cpp's average bits per weight for 2-D weights
# (K-quant mixes give some tensors more bits: these are the averages llama-quantize reports).
CONVERSION_BITS = {"q8_0": 8.5, "q6_k": 6.5625, "q5_k_m": 5.69, "q4_k_m": 4.85}
# GGUF metadata per vocabulary entry (token text, score, type), for the size of a converted file.
_VOCAB_BYTES_PER_TOKEN = 24
_SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")
CONVERT_SIDE_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "model.safetensors.index.json",
)
# icpp_llama2 models use llama2.c's 32000-token tokenizer; repos like karpathy/tinyllamas do not ship it.
LLAMA2C_VOCAB = 32000
LLAMA2C_TOKENIZER = {
    "url": "https://raw.githubusercontent.com/karpathy/llama2.c/350e04fe35433e6d2941dce5a1f53308f87058eb/tokenizer.bin",
    "filename": "tokenizer.bin",
    "sha256": "50a52ef822ee9e83de5ce9d0be0a025a773d019437f58b5ff9dcafb063ece361",
    "size": 433869,
}


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


def list_candidates(ctx: RepoContext) -> list[Candidate]:
    """Every candidate of the repo for the profile's kind, with its verdict."""
    evaluate = {
        "llama_cpp": _llama_cpp_candidates,
        "gpt2": _gpt2_candidates,
        "icpp_llama2": _llama2c_candidates,
    }
    kind = ctx.profile.kind
    if kind not in evaluate:
        raise PrepError(
            f"prep recipes new does not know how to judge files for canister kind {kind!r}",
            hint=f"kinds it knows: {', '.join(evaluate)}",
        )
    candidates = evaluate[kind](ctx)
    if not candidates:
        raise PrepError(
            f"{ctx.snapshot.repo} has no model files canister kind {kind} could use",
            hint=_WANTED[kind],
        )
    return candidates


_WANTED = {
    "llama_cpp": "llama_cpp loads GGUF files; prep also converts model*.safetensors with config.json",
    "gpt2": "the gpt2 canister loads a GPT-2 model.safetensors with config.json and tokenizer.json",
    "icpp_llama2": "icpp_llama2 loads llama2.c model .bin files",
}


def pick(candidates: list[Candidate], wanted: str | None = None) -> tuple[Candidate, str]:
    """The candidate to write a recipe for, and why (the rule, or --pick)."""
    if wanted is not None:
        return _picked(candidates, wanted)
    loadable = sorted((c for c in candidates if c.loadable), key=_rank)
    if not loadable:
        raise PrepError(
            "no candidate can be loaded:\n"
            + "\n".join(f"  {c.name}: {c.verdict}: {c.detail}" for c in candidates),
            hint="try another repo: a smaller model, or a GGUF of an architecture the canister knows",
        )
    choice = loadable[0]
    return choice, _why(choice, loadable)


def _picked(candidates: list[Candidate], wanted: str) -> tuple[Candidate, str]:
    for candidate in candidates:
        if wanted == candidate.name or wanted in candidate.files:
            if not candidate.loadable:
                raise PrepError(
                    f"--pick {wanted}: {candidate.verdict}: {candidate.detail}",
                    hint="pick a file whose verdict is fits, needs conversion or needs wasm_memory_limit",
                )
            return candidate, f"--pick {wanted}"
    names = ", ".join(c.name for c in candidates)
    raise PrepError(f"--pick {wanted}: not a candidate of this repo", hint=f"candidates: {names}")


def _tier(candidate: Candidate) -> int:
    # Ready-made files first, then prep's own conversion, then whatever needs the canister reconfigured.
    if candidate.memory_limit is not None:
        return 2
    return 0 if candidate.verdict == FITS else 1


def _rank(candidate: Candidate) -> tuple[int, int, int, str]:
    quant = (candidate.quant or "").upper()
    if quant in PREFERRED_QUANTS:
        group, order = 0, PREFERRED_QUANTS.index(quant)
    elif quant in _FLOAT_TYPES:
        group, order = 2, -(candidate.load_size or 0)
    else:
        group, order = 1, -(candidate.load_size or 0)
    return (_tier(candidate), group, order, candidate.name)


def _why(choice: Candidate, loadable: list[Candidate]) -> str:
    rule = (
        "rule: a file that fits as is before a conversion before one that needs wasm_memory_limit raised; "
        f"among them the largest quantization, {' > '.join(PREFERRED_QUANTS)}, then other quantizations "
        "by size, float types last"
    )
    others = [c.name for c in loadable if c is not choice]
    also = f"; also loadable: {', '.join(others)}" if others else ""
    return f"{choice.name} ({choice.quant}, {choice.verdict}): {rule}{also}"


# ---- llama_cpp -------------------------------------------------------------------------------------------


def _llama_cpp_candidates(ctx: RepoContext) -> list[Candidate]:
    ggufs = sorted(p for p in ctx.snapshot.files if p.endswith(".gguf"))
    candidates = [_gguf_candidate(ctx, path) for path in ggufs]
    shards = _safetensors_shards(ctx)
    if shards:
        candidates.append(_conversion_candidate(ctx, shards))
    return candidates


def _gguf_candidate(ctx: RepoContext, path: str) -> Candidate:
    size = ctx.snapshot.files[path].size
    split = _SPLIT_RE.search(path)
    if split:
        detail = (
            f"part {int(split.group(1))} of a GGUF split in {int(split.group(2))}: the canister loads "
            "one file (merge the parts with llama-gguf-split --merge, or pick a single-file quantization)"
        )
        return Candidate(path, (path,), size, UNUSABLE, detail)
    reader = ctx.reader(path)
    try:
        info = read_gguf_header(reader)
    except UnreadableHeader as err:
        return Candidate(
            path, (path,), size, UNUSABLE, f"unreadable GGUF header: {err.message}",
            header_bytes=len(reader.fetched), header_requests=reader.requests,
        )  # fmt: skip
    facts = _gguf_facts(info)
    role = ctx.profile.role("model")
    verdict, detail, heap, limit = _llama_cpp_fit(
        role.architectures, role.max_bytes, facts.arch, size, facts.shape
    )
    return Candidate(
        path,
        (path,),
        size,
        verdict,
        detail,
        quant=facts.quant,
        architecture=facts.arch,
        context_length=facts.shape.context_length if facts.shape else None,
        tensor_types=info.type_counts(),
        load_size=size,
        heap=heap,
        memory_limit=limit,
        header_bytes=len(reader.fetched),
        header_requests=reader.requests,
        build={"kind": "passthrough", "files": {"model": path}},
        shape=facts.shape,
        chat_template=facts.chat_template,
        template_source=f"{path} (tokenizer.chat_template)"
        if facts.chat_template
        else f"{path}: no chat template",
    )


@dataclass(frozen=True)
class _GgufFacts:
    arch: str | None
    quant: str | None
    shape: ModelShape | None
    chat_template: str | None


def _gguf_facts(info: GgufInfo) -> _GgufFacts:
    meta = info.metadata
    arch = info.architecture if isinstance(info.architecture, str) else None
    tokens = meta.get("tokenizer.ggml.tokens")
    n_vocab = tokens.length if isinstance(tokens, ArrayValue) else None
    shape = ModelShape.from_gguf(arch, meta, n_vocab) if arch else None
    template = meta.get("tokenizer.chat_template")
    return _GgufFacts(arch, _quant_name(info), shape, template if isinstance(template, str) else None)


def _quant_name(info: GgufInfo) -> str | None:
    """The file type llama.cpp reports (general.file_type), else the commonest type of the 2-D tensors."""
    file_type = info.metadata.get("general.file_type")
    if isinstance(file_type, int):
        try:
            return gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    counts: dict[str, int] = {}
    for tensor in info.tensors:
        if len(tensor.shape) >= 2:
            counts[tensor.type] = counts.get(tensor.type, 0) + tensor.nbytes
    return max(counts, key=lambda t: counts[t]) if counts else None


def _llama_cpp_fit(
    architectures: tuple[str, ...],
    max_bytes: int | None,
    arch: str | None,
    size: int,
    shape: ModelShape | None,
) -> tuple[str, str, int | None, int | None]:
    """(verdict, detail, heap, memory_limit) for a GGUF of `size` bytes."""
    if architectures and arch not in architectures:
        detail = (
            f"architecture {arch!r} is not one the canister's llama.cpp loads ({', '.join(architectures)})"
        )
        return UNKNOWN_ARCHITECTURE, detail, None, None
    if max_bytes is not None and size > max_bytes:
        detail = (
            f"{size:,} bytes, over the {max_bytes:,} one load message may read from stable memory "
            "(IC0524 on load_model)"
        )
        return TOO_BIG, detail, None, None
    heap = llama_cpp_heap(size, shape)
    return (*_heap_verdict(heap), heap, _memory_limit(heap))


def _heap_verdict(heap: int) -> tuple[str, str]:
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


def _memory_limit(heap: int) -> int | None:
    return RAISED_WASM_MEMORY_LIMIT if DEFAULT_WASM_MEMORY_LIMIT < heap <= RAISED_WASM_MEMORY_LIMIT else None


def _safetensors_shards(ctx: RepoContext) -> list[str]:
    """The checkpoint files prep's converter reads: model*.safetensors at the top of the repo."""
    return sorted(p for p in ctx.snapshot.files if "/" not in p and re.fullmatch(r"model.*\.safetensors", p))


@dataclass(frozen=True)
class _Checkpoint:
    """What the safetensors headers and config.json say about a checkpoint."""

    hf_arch: str | None
    config: dict[str, Any]
    matrix_elements: int  # 2-D and larger tensors: the ones quantization shrinks
    vector_elements: int  # 1-D tensors: kept F32
    tensor_types: dict[str, int]
    header_bytes: int
    header_requests: int


def _read_checkpoint(ctx: RepoContext, shards: list[str]) -> _Checkpoint:
    config = ctx.small_json("config.json")
    names = config.get("architectures") or []
    hf_arch = names[0] if isinstance(names, list) and names and isinstance(names[0], str) else None
    matrix = vector = fetched = requests = 0
    types: Counter[str] = Counter()
    for shard in shards:
        reader = ctx.reader(shard)
        header = read_safetensors_header(reader)
        fetched, requests = fetched + len(reader.fetched), requests + reader.requests
        for tensor in header.tensors:
            n = math.prod(tensor.shape)
            if len(tensor.shape) >= 2:
                matrix += n
            else:
                vector += n
        types.update(t.dtype for t in header.tensors)
    return _Checkpoint(hf_arch, config, matrix, vector, dict(types), fetched, requests)


def _conversion_candidate(ctx: RepoContext, shards: list[str]) -> Candidate:
    side = tuple(f for f in CONVERT_SIDE_FILES if ctx.has(f))
    files = (*shards, *side)
    size = sum(ctx.snapshot.files[f].size for f in files)
    base = Candidate(shards[0], files, size, UNUSABLE, "")
    if not ctx.has("config.json") or not ctx.has("tokenizer.json"):
        return replace(base, detail="conversion needs config.json and tokenizer.json; the repo lacks one")
    try:
        checkpoint = _read_checkpoint(ctx, shards)
    except UnreadableHeader as err:
        return replace(base, detail=f"unreadable checkpoint: {err.message}")
    base = replace(
        base,
        architecture=checkpoint.hf_arch,
        tensor_types=checkpoint.tensor_types,
        header_bytes=checkpoint.header_bytes,
        header_requests=checkpoint.header_requests,
    )
    arch_class = ARCHITECTURES.get(checkpoint.hf_arch or "")
    if arch_class is None:
        detail = (
            f"prep converts {', '.join(sorted(ARCHITECTURES))} to GGUF, not {checkpoint.hf_arch or '(none)'}"
        )
        return replace(base, verdict=UNKNOWN_ARCHITECTURE, detail=detail)
    gguf_arch = gguf.MODEL_ARCH_NAMES[arch_class.gguf_arch]
    shape = ModelShape.from_hf_config(checkpoint.config)
    template, template_source, eos = _tokenizer_template(ctx)
    base = replace(
        base,
        architecture=gguf_arch,
        context_length=shape.context_length if shape else None,
        shape=shape,
        chat_template=template,
        template_source=template_source,
        eos_token=eos,
    )
    return _best_conversion(ctx, base, checkpoint, gguf_arch, shape)


def _best_conversion(
    ctx: RepoContext, base: Candidate, checkpoint: _Checkpoint, gguf_arch: str, shape: ModelShape | None
) -> Candidate:
    """The first conversion type (in preference order) that fits, else the first that fits a raised limit."""
    role = ctx.profile.role("model")
    n_vocab = shape.n_vocab if shape else 0
    results = []
    for type_name, bits in CONVERSION_BITS.items():
        estimate = int(
            checkpoint.matrix_elements * bits / 8
            + checkpoint.vector_elements * 4
            + n_vocab * _VOCAB_BYTES_PER_TOKEN
        )
        verdict, detail, heap, limit = _llama_cpp_fit(
            role.architectures, role.max_bytes, gguf_arch, estimate, shape
        )
        results.append((type_name, estimate, verdict, detail, heap, limit))
    for wanted in (FITS, NEEDS_MEMORY_LIMIT):
        for type_name, estimate, verdict, detail, heap, limit in results:
            if verdict == wanted:
                return replace(
                    base,
                    verdict=NEEDS_CONVERSION,
                    detail=f"convert to GGUF {type_name} (~{estimate:,} bytes): {detail}",
                    quant=type_name.upper(),
                    load_size=estimate,
                    heap=heap,
                    memory_limit=limit,
                    build={"kind": "convert", "outtype": "f16", "quantize": type_name},
                )
    type_name, estimate, verdict, detail, _, _ = results[-1]
    return replace(base, verdict=verdict, detail=f"even as GGUF {type_name} (~{estimate:,} bytes): {detail}")


def _tokenizer_template(ctx: RepoContext) -> tuple[str | None, str, str]:
    """(chat template, where it came from, eos token) from chat_template.jinja or tokenizer_config.json."""
    config = ctx.small_json("tokenizer_config.json") if ctx.has("tokenizer_config.json") else {}
    eos = special_token(config, "eos_token")
    if ctx.has("chat_template.jinja"):
        local = ctx.client.download(
            ctx.snapshot.repo, "chat_template.jinja", ctx.snapshot.commit, progress=False
        )
        return local.read_text(encoding="utf-8", errors="replace"), "chat_template.jinja", eos
    template = template_from_tokenizer_config(config)
    source = "tokenizer_config.json" if template else "the repo has no chat template"
    return template, source, eos


# ---- gpt2 ------------------------------------------------------------------------------------------------


def _gpt2_candidates(ctx: RepoContext) -> list[Candidate]:
    if not ctx.has("model.safetensors"):
        return []
    files = tuple(f for f in ("model.safetensors", "config.json", "tokenizer.json") if ctx.has(f))
    size = sum(ctx.snapshot.files[f].size for f in files)
    base = Candidate("model.safetensors", files, size, UNUSABLE, "")
    if len(files) < 3:
        return [
            replace(base, detail="the gpt2 canister needs model.safetensors, config.json and tokenizer.json")
        ]
    config = ctx.small_json("config.json")
    names = config.get("architectures") or []
    if "GPT2LMHeadModel" not in names:
        detail = f"the gpt2 canister runs GPT2LMHeadModel, not {', '.join(map(str, names)) or '(none)'}"
        return [replace(base, verdict=UNKNOWN_ARCHITECTURE, detail=detail)]
    local_config = ctx.client.download(ctx.snapshot.repo, "config.json", ctx.snapshot.commit, progress=False)
    try:
        expected = read_gpt2_config(Path(local_config)).expected_shapes()
    except PrepError as err:  # a config.json the canister's loader would refuse
        return [replace(base, detail=err.message)]
    reader = ctx.reader("model.safetensors")
    try:
        header = read_safetensors_header(reader)
    except UnreadableHeader as err:
        return [replace(base, detail=err.message, header_bytes=len(reader.fetched))]
    elements = sum(math.prod(shape) for shape in expected.values())
    trimmed = 2 * elements  # the trim keeps what the loader reads, cast to f16
    # The canister keeps the file in a heap buffer and reads every tensor as F32 next to it.
    heap = trimmed + 4 * elements
    role = ctx.profile.role("safetensors")
    base = replace(
        base,
        quant="F16",
        architecture="gpt2",
        context_length=config.get("n_positions") if isinstance(config.get("n_positions"), int) else None,
        tensor_types=dict(Counter(t.dtype for t in header.tensors)),
        load_size=trimmed,
        heap=heap,
        header_bytes=len(reader.fetched),
        header_requests=reader.requests,
        build={"kind": "trim_gpt2", "dtype": "f16"},
        template_source="GPT-2 has no chat template",
    )
    if role.max_bytes is not None and trimmed > role.max_bytes:
        detail = f"trimmed to f16 it is ~{trimmed:,} bytes, over the gpt2 canister's {role.max_bytes:,}"
        return [replace(base, verdict=TOO_BIG, detail=detail)]
    verdict, detail = _heap_verdict(heap)
    detail = f"trim to the tensors the loader reads, f16 (~{trimmed:,} bytes); {detail}"
    return [replace(base, verdict=verdict, detail=detail, memory_limit=_memory_limit(heap))]


# ---- icpp_llama2 -----------------------------------------------------------------------------------------


def _llama2c_candidates(ctx: RepoContext) -> list[Candidate]:
    tokenizers = [
        p for p in ctx.snapshot.files if p.endswith(".bin") and Path(p).name.startswith("tokenizer")
    ]
    models = sorted(p for p in ctx.snapshot.files if p.endswith(".bin") and p not in tokenizers)
    role = ctx.profile.role("model")
    return [_llama2c_candidate(ctx, path, tokenizers, role.max_bytes) for path in models]


def _llama2c_candidate(
    ctx: RepoContext, path: str, tokenizers: list[str], max_bytes: int | None
) -> Candidate:
    size = ctx.snapshot.files[path].size
    reader = ctx.reader(path)
    values = read_llama2c_header(reader)
    base = Candidate(
        path, (path,), size, UNUSABLE, "", header_bytes=len(reader.fetched), header_requests=reader.requests
    )
    if values is None:
        return replace(base, detail="not a llama2.c model.bin (its first 28 bytes are no llama2.c header)")
    vocab, seq_len = abs(values[5]), values[6]
    extra: tuple[dict[str, Any], ...] = ()
    if tokenizers:
        tokenizer, files = tokenizers[0], (path, tokenizers[0])
    elif vocab == LLAMA2C_VOCAB:
        tokenizer, files, extra = LLAMA2C_TOKENIZER["filename"], (path,), (LLAMA2C_TOKENIZER,)
    else:
        return replace(base, detail=f"vocabulary of {vocab} tokens and no tokenizer*.bin in the repo")
    base = replace(
        base,
        files=files,
        quant="F32",
        architecture="llama2.c",
        context_length=seq_len,
        load_size=size,
        heap=size,
        build={"kind": "passthrough", "files": {"model": path, "tokenizer": tokenizer}},
        extra_sources=extra,
        template_source="llama2.c models have no chat template",
    )
    if max_bytes is not None and size > max_bytes:
        return replace(
            base, verdict=TOO_BIG, detail=f"{size:,} bytes, over the {max_bytes:,}-byte heap budget"
        )
    verdict, detail = _heap_verdict(size)
    return replace(base, verdict=verdict, detail=detail, memory_limit=_memory_limit(size))
