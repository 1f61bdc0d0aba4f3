"""llama_cpp candidates: GGUF files judged by their range-read headers, and safetensors to convert."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import gguf

from pipeline.convert.architectures import ARCHITECTURES
from pipeline.formats.gguf import ArrayValue, GgufInfo
from pipeline.pick.headers import UnreadableHeader, read_gguf_header, read_safetensors_header
from pipeline.pick.heap import ModelShape, llama_cpp_heap
from pipeline.pick.template import special_token, template_from_tokenizer_config
from pipeline.pick.verdicts import (
    FITS,
    NEEDS_CONVERSION,
    NEEDS_MEMORY_LIMIT,
    TOO_BIG,
    UNKNOWN_ARCHITECTURE,
    UNUSABLE,
    Candidate,
    RepoContext,
    heap_verdict,
    memory_limit,
)

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


def llama_cpp_candidates(ctx: RepoContext) -> list[Candidate]:
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
    """The file type llama.cpp reports (general.file_type), else the type holding most 2-D tensor bytes."""
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
    return (*heap_verdict(heap), heap, memory_limit(heap))


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
