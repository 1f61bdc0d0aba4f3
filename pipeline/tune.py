"""`prep tune`: the largest per-call token limit a loaded model takes under the instruction limit.

One update may execute at most 40 B instructions; every token a llama_cpp `run_update` decodes or
generates reads all the weights, so the token budget per call depends on the model. The kind's profile
declares the probe (`[tune]`, pipeline/targets/tuning.py): set the limit to N, start a chat, send one call
whose prompt is longer than N tokens. It either answers or is rejected for the instruction limit
(IC0522). Doubling finds a failing N, then a binary search the largest that passes; the result is set on
the canister and optionally written into the recipe.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.atomic import atomic_writer
from pipeline.errors import PrepError
from pipeline.ic.client import IcClient
from pipeline.ic.errors import CallRejected
from pipeline.targets.profile import CallSpec, TargetProfile
from pipeline.targets.session import TargetSession

INSTRUCTION_LIMIT_ERROR = "IC0522"
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


def tune_max_tokens(
    client: IcClient,
    canister_id: str,
    profile: TargetProfile,
    *,
    ceiling: int = DEFAULT_CEILING,
    on_probe: Callable[[Probe], None] | None = None,
) -> TuneResult:
    calls = profile.tune
    if calls is None:
        raise PrepError(
            f"canister kind {profile.kind} declares no [tune] probe in its profile.toml",
            hint="prep tune works with kinds that declare one, such as llama_cpp",
        )
    session = TargetSession(client, canister_id, profile)
    query_tokens = int(session.query(calls.current))
    result = TuneResult(0, query_tokens)

    def update(spec: CallSpec, **variables: Any) -> None:
        session.interpret(spec, client.call(canister_id, spec.method, session.args(spec, **variables)))

    def probe(n: int) -> bool:
        update(calls.set, max_tokens=n, max_tokens_query=query_tokens)
        update(calls.start)
        try:
            update(calls.probe, prompt=" ".join(["the"] * (2 * n + 8)))  # more tokens than one call takes
            outcome = Probe(n, True)
        except CallRejected as err:
            if err.error_code != INSTRUCTION_LIMIT_ERROR:
                raise
            outcome = Probe(n, False, err.reject_message)
        result.probes.append(outcome)
        if on_probe is not None:
            on_probe(outcome)
        return outcome.fits

    try:
        best = _search(probe, ceiling)
    finally:
        update(calls.finish)
    if best == 0:
        raise PrepError(
            f"even 1 token per call exceeds the instruction limit on {canister_id}",
            hint="the model is too large for this canister: pick a smaller model or quantization",
        )
    update(calls.set, max_tokens=best, max_tokens_query=query_tokens)
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
