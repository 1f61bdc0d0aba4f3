"""A repo's candidate model files for one canister kind, with verdicts, and the rule that picks one.

Each kind has its own judge (pipeline/pick/<kind>.py). Only headers are read (HTTP range requests),
plus the small JSON files conversion needs.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.errors import PrepError
from pipeline.pick.gpt2 import gpt2_candidates
from pipeline.pick.icpp_llama2 import llama2c_candidates
from pipeline.pick.llama_cpp import llama_cpp_candidates
from pipeline.pick.verdicts import FITS, Candidate, RepoContext

# The pick rule: the largest quantization that fits, in this order; then any other quantized type, the
# larger first; float types last (they cost twice Q8_0's instructions per token for no visible gain).
PREFERRED_QUANTS = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M")
_FLOAT_TYPES = ("F32", "F16", "BF16")
JUDGES: dict[str, Callable[[RepoContext], list[Candidate]]] = {
    "llama_cpp": llama_cpp_candidates,
    "gpt2": gpt2_candidates,
    "icpp_llama2": llama2c_candidates,
}


def list_candidates(ctx: RepoContext) -> list[Candidate]:
    """Every candidate of the repo for the profile's kind, with its verdict."""
    kind = ctx.profile.kind
    if kind not in JUDGES:
        raise PrepError(
            f"prep recipes new does not know how to judge files for canister kind {kind!r}",
            hint=f"kinds it knows: {', '.join(JUDGES)}",
        )
    candidates = JUDGES[kind](ctx)
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
