"""A kind's smoke dialogue, declared in its profile.toml `[smoke]` table: which calls, in what order,
which reply field carries the generated text, and what ends a repeated call.

```toml
[smoke]
name = "chat"                      # reported as the answer's protocol
ready = { method = "ready" }       # optional: asked first; an Err means "no model loaded"
max_tokens = 255                   # optional: the most tokens one smoke may ask for
continues_prompt = false           # optional: the text is a reply, not the prompt's continuation

[[smoke.calls]]
method = "continue_text"
args = [{ args = ["-p", "{prompt}", "-n", "{max_tokens}"] }]
text = "output"                    # reply field (dotted; "" = the reply itself) appended to the answer
tokens = "n_tokens_generated"      # optional: reply field counting generated tokens
echoes_prompt = true               # the text starts with the prompt: keep only what follows
refused = "note"                   # an Err answer is noted, not fatal ("fail" by default)
repeat = { until = [{ field = "generated_eog", equals = true }], max_calls = "{max_tokens}",
           at_limit = "stop", stop_without_text = true, check_first = true }
```
Templates use the kind's `[defaults]` plus `prompt`, `max_tokens`, `prompt_bytes`, `max_tokens_update`
and `max_tokens_query`. A repeated call ends when any `until` condition holds on its reply (a field
the reply lacks never holds), when it adds no text (`stop_without_text`), or after `max_calls` calls,
which is a failure unless `at_limit = "stop"`. `check_first` tests `until` on the previous call's
reply before the first call, so a loop that has nothing left to do makes no call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.errors import PrepError

if TYPE_CHECKING:
    from pipeline.targets.profile import CallSpec

REFUSALS = ("fail", "note")
AT_LIMIT = ("fail", "stop")


@dataclass(frozen=True)
class Condition:
    field: str  # dotted path into the reply
    equals: Any = None
    at_least: Any = None  # a number or a template such as "{max_tokens}"


@dataclass(frozen=True)
class Repeat:
    until: tuple[Condition, ...]
    max_calls: Any  # an int or a template
    at_limit: str = "fail"
    stop_without_text: bool = False
    check_first: bool = False


@dataclass(frozen=True)
class DialogueCall:
    call: CallSpec
    text: str | None = None
    tokens: str | None = None
    echoes_prompt: bool = False
    refused: str = "fail"
    repeat: Repeat | None = None


@dataclass(frozen=True)
class SmokeDialogue:
    name: str
    calls: tuple[DialogueCall, ...]
    ready: CallSpec | None = None  # asked first: an Err answer means no model is loaded
    max_tokens: int | None = None
    continues_prompt: bool = True  # the text continues the prompt (else it is a reply to it)

    def specs(self) -> list[CallSpec]:
        return ([self.ready] if self.ready else []) + [c.call for c in self.calls]


class CallReader(Protocol):
    def fail(self, key: str, expected: str) -> PrepError: ...

    def call(self, data: Any, key: str, extra: frozenset[str] = ...) -> CallSpec: ...


DIALOGUE_CALL_KEYS = frozenset({"text", "tokens", "echoes_prompt", "refused", "repeat"})


def read_dialogue(reader: CallReader, data: Any) -> SmokeDialogue:
    if not isinstance(data, dict):
        raise reader.fail("smoke", "a [smoke] table")
    known = {"name", "ready", "max_tokens", "calls", "continues_prompt"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise reader.fail(f"smoke.{unknown[0]}", f"one of {', '.join(sorted(known))} (unknown key)")
    calls = data.get("calls")
    if not isinstance(calls, list) or not calls:
        raise reader.fail("smoke.calls", "at least one [[smoke.calls]] table")
    cap = data.get("max_tokens")
    if cap is not None and (not isinstance(cap, int) or cap < 1):
        raise reader.fail("smoke.max_tokens", "a positive integer")
    return SmokeDialogue(
        name=str(data.get("name", "dialogue")),
        calls=tuple(_read_call(reader, c, f"smoke.calls[{i}]") for i, c in enumerate(calls)),
        ready=reader.call(data["ready"], "smoke.ready") if "ready" in data else None,
        max_tokens=cap,
        continues_prompt=bool(data.get("continues_prompt", True)),
    )


def _read_call(reader: CallReader, data: Any, key: str) -> DialogueCall:
    spec = reader.call(data, key, DIALOGUE_CALL_KEYS)
    refused = data.get("refused", "fail")
    if refused not in REFUSALS:
        raise reader.fail(f"{key}.refused", " or ".join(REFUSALS))
    for name in ("text", "tokens"):
        if name in data and not isinstance(data[name], str):
            raise reader.fail(f"{key}.{name}", 'a dotted reply field ("" for the reply itself)')
    return DialogueCall(
        call=spec,
        text=data.get("text"),
        tokens=data.get("tokens"),
        echoes_prompt=bool(data.get("echoes_prompt", False)),
        refused=refused,
        repeat=_read_repeat(reader, data["repeat"], f"{key}.repeat") if "repeat" in data else None,
    )


def _read_repeat(reader: CallReader, data: Any, key: str) -> Repeat:
    known = {"until", "max_calls", "at_limit", "stop_without_text", "check_first"}
    if not isinstance(data, dict) or set(data) - known:
        raise reader.fail(key, f"a table of {', '.join(sorted(known))}")
    if "max_calls" not in data:
        raise reader.fail(f"{key}.max_calls", "a bound on the calls (an integer or a template)")
    if data.get("at_limit", "fail") not in AT_LIMIT:
        raise reader.fail(f"{key}.at_limit", " or ".join(AT_LIMIT))
    until = data.get("until", [])
    if not isinstance(until, list):
        raise reader.fail(f"{key}.until", "a list of { field, equals | at_least } tables")
    conditions = []
    for index, item in enumerate(until):
        where = f"{key}.until[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("field"), str):
            raise reader.fail(f"{where}.field", "a dotted reply field")
        if set(item) - {"field", "equals", "at_least"} or ("equals" in item) == ("at_least" in item):
            raise reader.fail(where, "{ field = ..., equals = value } or { field = ..., at_least = number }")
        conditions.append(Condition(item["field"], item.get("equals"), item.get("at_least")))
    return Repeat(
        until=tuple(conditions),
        max_calls=data["max_calls"],
        at_limit=data.get("at_limit", "fail"),
        stop_without_text=bool(data.get("stop_without_text", False)),
        check_first=bool(data.get("check_first", False)),
    )
