"""icpp_llama2 candidates: llama2.c model .bin files, judged by their 28-byte header."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.pick.headers import read_llama2c_header
from pipeline.pick.verdicts import TOO_BIG, UNUSABLE, Candidate, RepoContext, heap_verdict, memory_limit

# icpp_llama2 models use llama2.c's 32000-token tokenizer; repos like karpathy/tinyllamas do not ship it.
LLAMA2C_VOCAB = 32000
LLAMA2C_TOKENIZER = {
    "url": "https://raw.githubusercontent.com/karpathy/llama2.c/350e04fe35433e6d2941dce5a1f53308f87058eb/tokenizer.bin",
    "filename": "tokenizer.bin",
    "sha256": "50a52ef822ee9e83de5ce9d0be0a025a773d019437f58b5ff9dcafb063ece361",
    "size": 433869,
}


def llama2c_candidates(ctx: RepoContext) -> list[Candidate]:
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
    verdict, detail = heap_verdict(size)
    return replace(base, verdict=verdict, detail=detail, memory_limit=memory_limit(size))
