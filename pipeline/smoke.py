"""Remote smoke test: prove that a deployed model answers a prompt.

The dialogue is chosen by the methods in the kind's service.did, not by the kind's name, so a new
canister kind that speaks one of these protocols needs a folder in canisters/, not code:
  chat       (llama_cpp_canister): set_max_tokens, remove_prompt_cache, new_chat, then run_update until
             the prompt is consumed and again with an empty prompt until end of generation or the budget;
  generate   (the candle GPT-2 canister): one generate(prompt, max_tokens, temperature) call;
  inference  (icpp_llama2): new_chat, then one inference(record { prompt; steps; ... }) call.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.errors import PrepError
from pipeline.ic import candid
from pipeline.ic.client import IcClient
from pipeline.ic.errors import CallRejected
from pipeline.recipes import TargetSpec
from pipeline.targets.calls import CanisterRefused, interpret_reply
from pipeline.targets.profile import CallSpec, TargetProfile
from pipeline.targets.retry import read_with_retries

EventSink = Callable[[dict[str, Any]], None]
PROMPT_CACHE = "prompt.cache"
MAX_NAT8 = 255
# Greedy decoding: the smoke answer of a deterministic model is then reproducible.
TEMPERATURE = 0.0
TOP_P = 0.9
CHAT_METHODS = ("new_chat", "run_update")


@dataclass(frozen=True)
class SmokeRequest:
    prompt: str
    max_tokens: int
    expect: str | None = None  # a regex the answer must match
    max_tokens_update: int | None = None  # chat: tokens per run_update call
    max_tokens_query: int | None = None


@dataclass(frozen=True)
class SmokeAnswer:
    kind: str
    protocol: str
    canister_id: str
    prompt: str
    text: str  # what the model generated (without the echoed prompt)
    tokens: int | None
    calls: int
    seconds: float
    expect: str | None
    passed: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def smoke_protocol(profile: TargetProfile) -> str:
    """Which dialogue the kind's Candid supports; a PrepError when none."""
    assert profile.service is not None
    methods = profile.service.methods
    if all(m in methods for m in CHAT_METHODS):
        return "chat"
    if "generate" in methods:
        return "generate"
    if "inference" in methods:
        return "inference"
    raise PrepError(
        f"canister kind {profile.kind} has no smoke dialogue: its service.did declares none of "
        "new_chat + run_update, generate, inference",
        hint=f"add the method the canister answers prompts with to {profile.directory / 'service.did'}",
    )


def smoke_canister(
    client: IcClient,
    profile: TargetProfile,
    canister_id: str,
    request: SmokeRequest,
    on_event: EventSink | None = None,
) -> SmokeAnswer:
    """Asks the canister the prompt and checks the answer; raises PrepError when it cannot answer."""
    protocol = smoke_protocol(profile)
    dialogue = _Dialogue(client, profile, canister_id, on_event or (lambda _e: None))
    started = time.monotonic()
    dialogue.check_ready()
    if protocol == "chat":
        text, tokens = dialogue.chat(request)
    elif protocol == "generate":
        text, tokens = dialogue.generate(request)
    else:
        text, tokens = dialogue.inference(request)
    passed = request.expect is None or re.search(request.expect, text) is not None
    answer = SmokeAnswer(
        kind=profile.kind,
        protocol=protocol,
        canister_id=canister_id,
        prompt=request.prompt,
        text=text,
        tokens=tokens,
        calls=dialogue.calls,
        seconds=round(time.monotonic() - started, 3),
        expect=request.expect,
        passed=passed,
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


class _Dialogue:
    def __init__(self, client: IcClient, profile: TargetProfile, canister_id: str, emit: EventSink) -> None:
        assert profile.service is not None
        self.client = client
        self.profile = profile
        self.methods = profile.service.methods
        self.canister_id = canister_id
        self.emit = emit
        self.calls = 0

    def check_ready(self) -> None:
        """Asks `ready` first when the kind has it, so a missing model fails with that reason."""
        method = self.methods.get("ready")
        if method is None or not method.is_query or method.args:
            return
        try:
            self.ask("ready")
        except CanisterRefused as err:
            raise PrepError(
                f"{self.profile.kind} canister {self.canister_id} is not ready ({err.message})",
                hint="upload and load the model first: prep upload RECIPE (or prep run RECIPE)",
            ) from err

    def ask(self, method: str, *args: Any) -> Any:
        """One call (a query or an exactly-once update); the answer with Ok unwrapped.

        An `Err` answer raises CanisterRefused, whose message quotes the canister.
        """
        if method not in self.methods:
            raise PrepError(f"{self.profile.directory / 'service.did'} does not declare {method}")
        spec = CallSpec(method=method)
        arg = candid.encode(list(self.methods[method].args), list(args))
        self.calls += 1
        self.emit({"event": "smoke_call", "method": method})
        try:
            if self.methods[method].is_query:
                reply = read_with_retries(lambda: self.client.query(self.canister_id, method, arg))
            else:
                reply = self.client.call(self.canister_id, method, arg)
        except CallRejected as err:
            raise PrepError(
                f"{method} on {self.profile.kind} canister {self.canister_id} was rejected: "
                f"{err.reject_message or err}",
                hint=_reject_hint(err),
            ) from err
        return interpret_reply(self.profile, spec, reply)

    # ---- the dialogues ------------------------------------------------------------------------

    def chat(self, request: SmokeRequest) -> tuple[str, int | None]:
        cache = ["--prompt-cache", PROMPT_CACHE]
        if "set_max_tokens" in self.methods:
            defaults = self.profile.defaults
            limits = {
                "max_tokens_update": request.max_tokens_update or defaults.get("max_tokens_update", 10),
                "max_tokens_query": request.max_tokens_query or defaults.get("max_tokens_query", 10),
            }
            try:
                self.ask("set_max_tokens", limits)
            except CanisterRefused as err:  # only controllers may; the load already set the limits
                self.emit({"event": "smoke_note", "method": "set_max_tokens", "refused": err.message})
        if "remove_prompt_cache" in self.methods:
            self.ask("remove_prompt_cache", {"args": cache})
        self.ask("new_chat", {"args": cache})
        budget = ["-n", str(request.max_tokens)]
        run = [*cache, "--prompt-cache-all"]
        # Each call decodes at least one prompt token, so the prompt's length in bytes bounds the calls.
        output, reply = self._run_until(
            lambda r: r["prompt_remaining"] == "",
            [*run, "-p", request.prompt, *budget],
            max_calls=len(request.prompt.encode()) + 2,
            what="consume the prompt",
        )

        def done(reply: dict[str, Any]) -> bool:
            return bool(reply["generated_eog"]) or _generated(reply) >= request.max_tokens

        if not done(reply):
            more, reply = self._run_until(
                done, [*run, "-p", "", *budget], max_calls=request.max_tokens + 2, what="finish generating"
            )
            output += more
        return output, _generated(reply) or None

    def _run_until(
        self, finished: Callable[[dict[str, Any]], bool], args: list[str], *, max_calls: int, what: str
    ) -> tuple[str, dict[str, Any]]:
        output = ""
        for _ in range(max_calls):
            reply = self.ask("run_update", {"args": args})
            output += reply["output"]
            if finished(reply):
                return output, reply
        raise PrepError(
            f"{self.profile.kind} canister {self.canister_id} did not {what} "
            f"within {max_calls} run_update calls",
            hint="check max_tokens_update (set_max_tokens) and the model's context size",
        )

    def generate(self, request: SmokeRequest) -> tuple[str, int | None]:
        tokens = min(request.max_tokens, MAX_NAT8)
        text = self.ask("generate", request.prompt, tokens, TEMPERATURE)
        return _without_prompt(str(text), request.prompt), None

    def inference(self, request: SmokeRequest) -> tuple[str, int | None]:
        if "new_chat" in self.methods:
            self.ask("new_chat")
        prompt = {
            "prompt": request.prompt,
            "steps": request.max_tokens,
            "temperature": TEMPERATURE,
            "topp": TOP_P,
            "rng_seed": 0,
        }
        reply = self.ask("inference", prompt)
        return _without_prompt(str(reply["inference"]), request.prompt), int(reply["num_tokens"])


def _generated(reply: dict[str, Any]) -> int:
    return int(reply.get("n_tokens_generated") or 0)


def _without_prompt(text: str, prompt: str) -> str:
    """Canisters that echo the prompt before the continuation: keep only what the model added."""
    return text[len(prompt) :] if prompt and text.startswith(prompt) else text


def _reject_hint(err: CallRejected) -> str | None:
    if err.error_code == "IC0536":
        return "the canister has no such method: is it the kind you named (prep canister info)?"
    if err.error_code == "IC0406" or "nauthori" in (err.reject_message or ""):
        return "this identity may not call it; use a controller's identity (--pem / --identity)"
    return None
