"""Remote smoke test: prove that a deployed model answers a prompt.

The dialogue (which calls, in what order, which reply field carries the text, what ends a repeated
call) is declared in the kind's profile.toml `[smoke]` table (pipeline.targets.dialogue); this module
runs any such dialogue and knows no canister's method names. When the canister publishes its Candid
interface, the dialogue's calls are checked against it first (pipeline.targets.interface).
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.errors import PrepError
from pipeline.events import EventSink
from pipeline.ic.client import IcClient
from pipeline.ic.errors import CallRejected
from pipeline.recipes import TargetSpec
from pipeline.targets.calls import CanisterRefused, encode_args, interpret_reply, pick, render
from pipeline.targets.dialogue import Condition, DialogueCall, Repeat, SmokeDialogue
from pipeline.targets.interface import fit_to_canister
from pipeline.targets.profile import CallSpec, TargetProfile


@dataclass(frozen=True)
class SmokeRequest:
    prompt: str
    max_tokens: int
    expect: str | None = None  # a regex the answer must match
    max_tokens_update: int | None = None  # tokens per call, for kinds that set it (llama_cpp)
    max_tokens_query: int | None = None
    variables: dict[str, str] = field(default_factory=dict)  # more template values (e.g. model)


@dataclass(frozen=True)
class SmokeAnswer:
    kind: str
    protocol: str  # the dialogue's name in the kind's profile
    canister_id: str
    prompt: str
    text: str  # what the model generated (without an echoed prompt)
    tokens: int | None
    calls: int
    seconds: float
    expect: str | None
    passed: bool
    continues_prompt: bool = True  # the text continues the prompt; else it is a reply to it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def transcript(self) -> str:
        """The prompt and the answer, as a reader expects to see them."""
        return self.prompt + self.text if self.continues_prompt else f"{self.prompt}\n{self.text}"


def smoke_canister(
    client: IcClient,
    profile: TargetProfile,
    canister_id: str,
    request: SmokeRequest,
    on_event: EventSink | None = None,
) -> SmokeAnswer:
    """Asks the canister the prompt and checks the answer; raises PrepError when it cannot answer."""
    profile = _fit_to_canister(client, profile, canister_id)
    dialogue = _dialogue_of(profile)
    runner = _Runner(client, profile, canister_id, _variables(profile, dialogue, request), on_event)
    started = time.monotonic()
    runner.check_ready(dialogue)
    text, tokens = runner.run(dialogue)
    passed = request.expect is None or re.search(request.expect, text) is not None
    answer = SmokeAnswer(
        kind=profile.kind,
        protocol=dialogue.name,
        canister_id=canister_id,
        prompt=request.prompt,
        text=text,
        tokens=tokens,
        calls=runner.calls,
        seconds=round(time.monotonic() - started, 3),
        expect=request.expect,
        passed=passed,
        continues_prompt=dialogue.continues_prompt,
    )
    if not passed:
        raise SmokeFailed(
            f"smoke test of {profile.kind} canister {canister_id} failed: the answer {text!r} does not "
            f"match {request.expect!r}",
            answer=answer,
            hint="the model answers but not as the recipe expects; check the model and the load arguments",
        )
    return answer


def request_for_recipe(
    target: TargetSpec, *, prompt: str | None = None, max_tokens: int | None = None
) -> SmokeRequest:
    """The recipe's smoke prompt, budget and expectation; a prompt given by hand has no expectation."""
    return SmokeRequest(
        prompt=prompt if prompt is not None else target.smoke.prompt,
        max_tokens=max_tokens or target.smoke.max_tokens,
        expect=None if prompt is not None else target.smoke.expect,
        max_tokens_update=target.max_tokens_update,
        max_tokens_query=target.max_tokens_query,
    )


class SmokeFailed(PrepError):
    """The canister answered, but not what the recipe's `expect` asks for."""

    def __init__(self, message: str, *, answer: SmokeAnswer, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.answer = answer


def _dialogue_of(profile: TargetProfile) -> SmokeDialogue:
    if profile.smoke is None or not profile.smoke.calls:
        raise PrepError(
            f"canister kind {profile.kind} declares no smoke dialogue",
            hint=f"add a [smoke] table to {profile.directory / 'profile.toml'} (see the README)",
        )
    return profile.smoke


def _fit_to_canister(client: IcClient, profile: TargetProfile, canister_id: str) -> TargetProfile:
    """Checks the dialogue's calls against the canister's published interface, when it publishes one."""
    specs = _dialogue_of(profile).specs()
    methods = {s.method for s in specs} | {s.fallback.method for s in specs if s.fallback}
    return fit_to_canister(client, canister_id, profile, methods=methods)


def _variables(profile: TargetProfile, dialogue: SmokeDialogue, request: SmokeRequest) -> dict[str, Any]:
    budget = min(request.max_tokens, dialogue.max_tokens or request.max_tokens)
    defaults = profile.defaults
    return {
        **defaults,
        **request.variables,
        "prompt": request.prompt,
        "prompt_bytes": len(request.prompt.encode()),
        "max_tokens": budget,
        "max_tokens_update": request.max_tokens_update or defaults.get("max_tokens_update", budget),
        "max_tokens_query": request.max_tokens_query or defaults.get("max_tokens_query", budget),
    }


class _Runner:
    """Runs a declared dialogue: each call once, or repeated until its reply says it is done."""

    def __init__(
        self,
        client: IcClient,
        profile: TargetProfile,
        canister_id: str,
        variables: dict[str, Any],
        on_event: EventSink | None,
    ) -> None:
        self.client = client
        self.profile = profile
        self.canister_id = canister_id
        self.variables = variables
        self.emit = on_event or (lambda _event: None)
        self.calls = 0
        self.text = ""
        self.tokens: int | None = None
        self.last: Any = None  # the latest reply

    def check_ready(self, dialogue: SmokeDialogue) -> None:
        """Asks the ready probe first, so a missing model fails with that reason."""
        if dialogue.ready is None:
            return
        try:
            self.ask(dialogue.ready)
        except CanisterRefused as err:
            raise PrepError(
                f"{self.profile.kind} canister {self.canister_id} is not ready ({err.message})",
                hint="upload and load the model first: prep upload RECIPE (or prep run RECIPE)",
            ) from err

    def run(self, dialogue: SmokeDialogue) -> tuple[str, int | None]:
        for step in dialogue.calls:
            if step.repeat is None:
                self.step(step)
            else:
                self.repeat(step, step.repeat)
        return self.text, self.tokens

    def step(self, step: DialogueCall) -> str:
        """One call; what it added to the answer."""
        try:
            reply = self.ask(step.call)
        except CanisterRefused as err:
            if step.refused != "note":
                raise
            self.emit({"event": "smoke_note", "method": step.call.method, "refused": err.message})
            return ""
        self.last = reply
        piece = _read_text(step, reply, self.variables["prompt"])
        self.text += piece
        count = _read_field(reply, step.tokens) if step.tokens else None
        self.tokens = int(count) if count is not None else self.tokens
        return piece

    def repeat(self, step: DialogueCall, repeat: Repeat) -> None:
        if repeat.check_first and self.last is not None and self.done(repeat, self.last):
            return
        limit = max(1, int(render(repeat.max_calls, self.variables)))
        for _ in range(limit):
            piece = self.step(step)
            if self.done(repeat, self.last) or (repeat.stop_without_text and not piece):
                return
        if repeat.at_limit == "stop":
            return
        wanted = " or ".join(_show(c) for c in repeat.until) or "its end"
        raise PrepError(
            f"{self.profile.kind} canister {self.canister_id} did not reach {wanted} within {limit} "
            f"{step.call.method} calls",
            hint="check the canister's token limits and the model's context size",
        )

    def done(self, repeat: Repeat, reply: Any) -> bool:
        return any(self.holds(condition, reply) for condition in repeat.until)

    def holds(self, condition: Condition, reply: Any) -> bool:
        value = _read_field(reply, condition.field)
        if value is None:
            return False  # replies of older releases may lack the field
        if condition.at_least is not None:
            return int(value) >= int(render(condition.at_least, self.variables))
        return bool(value == condition.equals)

    def ask(self, spec: CallSpec) -> Any:
        """One call (a query, or an exactly-once update); the answer with Ok unwrapped.

        An `Err` answer raises CanisterRefused, whose message quotes the canister.
        """
        arg = encode_args(self.profile, spec, self.variables)
        self.calls += 1
        self.emit({"event": "smoke_call", "method": spec.method})
        try:
            if self.profile.is_query(spec.method):
                reply = self.client.query(self.canister_id, spec.method, arg)
            else:
                reply = self.client.call(self.canister_id, spec.method, arg)
        except CallRejected as err:
            raise PrepError(
                f"{spec.method} on {self.profile.kind} canister {self.canister_id} was rejected: "
                f"{err.reject_message or err}",
                hint=_reject_hint(err),
            ) from err
        return interpret_reply(self.profile, spec, reply)


def _read_text(step: DialogueCall, reply: Any, prompt: str) -> str:
    if step.text is None:
        return ""
    value = _read_field(reply, step.text)
    text = "" if value is None else str(value)
    return text[len(prompt) :] if step.echoes_prompt and prompt and text.startswith(prompt) else text


def _read_field(reply: Any, path: str) -> Any:
    """A dotted field of the reply ("" = the reply itself); None when the reply lacks it."""
    if path == "":
        return reply
    try:
        return pick(reply, path)
    except PrepError:
        return None


def _show(condition: Condition) -> str:
    if condition.at_least is not None:
        return f"{condition.field} >= {condition.at_least}"
    return f"{condition.field} = {condition.equals!r}"


def _reject_hint(err: CallRejected) -> str | None:
    if err.error_code == "IC0536":
        return "the canister has no such method: is it the kind you named (prep canister info)?"
    if err.error_code == "IC0406" or "nauthori" in (err.reject_message or ""):
        return "this identity may not call it; use a controller's identity (--pem / --identity)"
    return None
