"""gpt2 candidates: a GPT-2 model.safetensors, judged by what trimming it to f16 leaves."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

from pipeline.errors import PrepError
from pipeline.formats.config_json import read_gpt2_config
from pipeline.pick import verdicts
from pipeline.pick.headers import UnreadableHeader, read_safetensors_header
from pipeline.pick.verdicts import Candidate, RepoContext


def gpt2_candidates(ctx: RepoContext) -> list[Candidate]:
    if not ctx.has("model.safetensors"):
        return []
    files = tuple(f for f in ("model.safetensors", "config.json", "tokenizer.json") if ctx.has(f))
    size = sum(ctx.snapshot.files[f].size for f in files)
    base = Candidate("model.safetensors", files, size, verdicts.UNUSABLE, "")
    if len(files) < 3:
        return [
            replace(base, detail="the gpt2 canister needs model.safetensors, config.json and tokenizer.json")
        ]
    config = ctx.small_json("config.json")
    names = config.get("architectures") or []
    if "GPT2LMHeadModel" not in names:
        detail = f"the gpt2 canister runs GPT2LMHeadModel, not {', '.join(map(str, names)) or '(none)'}"
        return [replace(base, verdict=verdicts.UNKNOWN_ARCHITECTURE, detail=detail)]
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
        return [replace(base, verdict=verdicts.TOO_BIG, detail=detail)]
    verdict, detail = verdicts.heap_verdict(heap)
    detail = f"trim to the tensors the loader reads, f16 (~{trimmed:,} bytes); {detail}"
    return [replace(base, verdict=verdict, detail=detail, memory_limit=verdicts.memory_limit(heap))]
