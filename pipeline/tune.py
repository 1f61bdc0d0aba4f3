"""`prep tune`: the largest `max_tokens_update` a loaded llama_cpp canister handles per `run_update`.

One `run_update` may execute at most 40 B instructions; every token it decodes or generates reads all the
weights, so the token budget per call depends on the model. Each probe sets `max_tokens_update` to N,
starts a chat and sends one `run_update` whose prompt has more than N words (the call decodes N tokens):
it either answers or is rejected for the instruction limit (IC0522). Doubling finds a failing N, then a
binary search the largest that passes; the result is set on the canister and optionally written to the
recipe. The probes use their own prompt cache, removed at the end.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.atomic import atomic_writer
from pipeline.errors import PrepError
from pipeline.ic import candid
from pipeline.ic.client import IcClient
from pipeline.ic.errors import CallRejected
from pipeline.targets.profile import TargetProfile

INSTRUCTION_LIMIT_ERROR = "IC0522"
PROBE_CACHE = "prep-tune.cache"
TUNE_METHODS = ("get_max_tokens", "set_max_tokens", "new_chat", "run_update", "remove_prompt_cache")
DEFAULT_CEILING = 4096


@dataclass(frozen=True)
class Probe:
    max_tokens: int
    fits: bool
    detail: str = ""


@dataclass
class TuneResult:
    max_tokens_update: int
    max_tokens_query: int
    probes: list[Probe] = field(default_factory=list)


class _LlamaCppCalls:
    """The calls a probe needs, typed by the kind's service.did."""

    def __init__(self, client: IcClient, canister_id: str, profile: TargetProfile) -> None:
        service = profile.service
        missing = [m for m in TUNE_METHODS if service is None or m not in service.methods]
        if missing:
            raise PrepError(
                f"prep tune works with llama_cpp-style canisters; kind {profile.kind} lacks "
                + ", ".join(missing),
                hint="pass --kind llama_cpp (or a kind whose service.did has these methods)",
            )
        assert service is not None
        self.client, self.canister_id, self.methods = client, canister_id, service.methods

    def call(self, method: str, *values: Any) -> Any:
        spec = self.methods[method]
        arg = candid.encode(list(spec.args), list(values))
        if spec.is_query:
            raw = self.client.query(self.canister_id, method, arg)
        else:
            raw = self.client.call(self.canister_id, method, arg)
        decoded = candid.decode(raw, list(spec.rets))
        reply = decoded[0] if decoded else None
        if isinstance(reply, dict) and "Err" in reply:
            raise PrepError(f"{method} on {self.canister_id} failed: {_describe(reply['Err'])}")
        return reply


def tune_max_tokens(
    client: IcClient,
    canister_id: str,
    profile: TargetProfile,
    *,
    ceiling: int = DEFAULT_CEILING,
    on_probe: Callable[[Probe], None] | None = None,
) -> TuneResult:
    calls = _LlamaCppCalls(client, canister_id, profile)
    current = calls.call("get_max_tokens")
    query_tokens = int(current["max_tokens_query"])
    result = TuneResult(0, query_tokens)

    def probe(n: int) -> bool:
        outcome = _probe(calls, n, query_tokens)
        result.probes.append(outcome)
        if on_probe is not None:
            on_probe(outcome)
        return outcome.fits

    try:
        best = _search(probe, ceiling)
    finally:
        calls.call("remove_prompt_cache", {"args": ["--prompt-cache", PROBE_CACHE]})
    if best == 0:
        raise PrepError(
            f"even 1 token per run_update exceeds the instruction limit on {canister_id}",
            hint="the model is too large for this canister: pick a smaller model or quantization",
        )
    calls.call("set_max_tokens", {"max_tokens_update": best, "max_tokens_query": query_tokens})
    result.max_tokens_update = best
    return result


def _search(fits: Callable[[int], bool], ceiling: int) -> int:
    """The largest n in 1..ceiling with fits(n), fits being monotone (0 when even 1 fails): double until
    a failure (or the ceiling), then bisect between the last pass and the first failure."""
    good, n = 0, 1
    while n <= ceiling and fits(n):
        good, n = n, n * 2
    bad = min(n, ceiling + 1)
    while bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if fits(middle) else (good, middle)
    return good


def _probe(calls: _LlamaCppCalls, n: int, query_tokens: int) -> Probe:
    calls.call("set_max_tokens", {"max_tokens_update": n, "max_tokens_query": query_tokens})
    calls.call("new_chat", {"args": ["--prompt-cache", PROBE_CACHE]})
    prompt = " ".join(["the"] * (2 * n + 8))  # more tokens than one call may decode
    args = ["--prompt-cache", PROBE_CACHE, "--prompt-cache-all", "-p", prompt, "-n", "1"]
    try:
        calls.call("run_update", {"args": args})
    except CallRejected as err:
        if err.error_code == INSTRUCTION_LIMIT_ERROR or "instructions" in err.reject_message:
            return Probe(n, False, err.reject_message)
        raise
    return Probe(n, True)


def write_max_tokens(recipe_path: Path, value: int) -> None:
    """Sets `max_tokens_update` in the recipe's [target] table, keeping the rest of the file as it is."""
    lines = recipe_path.read_text().splitlines(keepends=True)
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "[target]")
    except StopIteration:
        raise PrepError(f"{recipe_path} has no [target] table to write max_tokens_update into") from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    setting = f"max_tokens_update = {value}\n"
    for i in range(start + 1, end):
        if re.match(r"\s*max_tokens_update\s*=", lines[i]):
            lines[i] = setting
            break
    else:
        last = max((i for i in range(start + 1, end) if lines[i].strip()), default=start)
        lines.insert(last + 1, setting)
    with atomic_writer(recipe_path) as handle:
        handle.write("".join(lines).encode())


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        if "error" in value and value["error"]:
            return str(value["error"])
        if len(value) == 1:
            ((tag, payload),) = value.items()
            return f"{tag}: {payload}" if payload is not None else str(tag)
    return str(value)
