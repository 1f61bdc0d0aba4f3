"""The `[tune]` table of a kind's profile: the calls `prep tune` probes a loaded model with.

current  a query giving the limits now (its `value`: the per-query token limit, kept as it is)
set      sets the per-call token limit to {max_tokens} (and the query limit to {max_tokens_query})
start    starts a fresh chat for the probe
probe    one call that must process {max_tokens} tokens: its prompt {prompt} is longer than that
finish   cleans up after the probes (e.g. removes their prompt cache)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.targets.dialogue import CallReader

if TYPE_CHECKING:
    from pipeline.targets.profile import CallSpec

TUNE_CALLS = ("current", "set", "start", "probe", "finish")


@dataclass(frozen=True)
class TuneCalls:
    current: CallSpec
    set: CallSpec
    start: CallSpec
    probe: CallSpec
    finish: CallSpec

    def specs(self) -> list[CallSpec]:
        return [getattr(self, name) for name in TUNE_CALLS]


def read_tune(reader: CallReader, data: Any) -> TuneCalls:
    if not isinstance(data, dict):
        raise reader.fail("tune", "a [tune] table")
    unknown = sorted(set(data) - set(TUNE_CALLS))
    if unknown:
        raise reader.fail(f"tune.{unknown[0]}", f"one of {', '.join(TUNE_CALLS)} (unknown key)")
    missing = [name for name in TUNE_CALLS if name not in data]
    if missing:
        raise reader.fail(f"tune.{missing[0]}", f"a call (the [tune] table needs {', '.join(TUNE_CALLS)})")
    return TuneCalls(**{name: reader.call(data[name], f"tune.{name}") for name in TUNE_CALLS})
