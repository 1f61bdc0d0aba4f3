"""Model of DFINITY's hosted LLM canister (github.com/dfinity/llm, mainnet w36hm-eqaaa-aaaal-qr76a-cai).

The real canister hands prompts to off-chain workers running the named model; this one answers
deterministically from the model name and the conversation, so tests can check the exact text.
"""

from __future__ import annotations

import hashlib
from typing import Any

from tests.icsim.candid import NULL, TEXT, Opt, Vec, record, variant
from tests.icsim.canisters.base import CallContext, CanisterModel, Trap, update

MODELS = ("llama3.1:8b", "qwen3:32b", "llama4-scout")

TOOL_CALL_ARGUMENT = record(value=TEXT, name=TEXT)
ASSISTANT_MESSAGE = record(
    content=Opt(TEXT),
    tool_calls=Vec(record(id=TEXT, function=record(name=TEXT, arguments=Vec(TOOL_CALL_ARGUMENT)))),
)
CHAT_MESSAGE_V0 = record(content=TEXT, role=variant(user=NULL, assistant=NULL, system=NULL))
CHAT_MESSAGE_V1 = variant(
    tool=record(content=TEXT, tool_call_id=TEXT),
    user=record(content=TEXT),
    assistant=ASSISTANT_MESSAGE,
    system=record(content=TEXT),
)
PROPERTY = record(enum=Opt(Vec(TEXT)), name=TEXT, type=TEXT, description=Opt(TEXT))
PARAMETERS = record(type=TEXT, properties=Opt(Vec(PROPERTY)), required=Opt(Vec(TEXT)))
TOOL = variant(function=record(name=TEXT, parameters=Opt(PARAMETERS), description=Opt(TEXT)))
CHAT_REQUEST_V0 = record(model=TEXT, messages=Vec(CHAT_MESSAGE_V0))
CHAT_REQUEST_V1 = record(model=TEXT, tools=Opt(Vec(TOOL)), messages=Vec(CHAT_MESSAGE_V1))
CHAT_RESPONSE_V1 = record(message=ASSISTANT_MESSAGE)


class IcLlmCanister(CanisterModel):
    kind = "ic_llm"

    @update(CHAT_REQUEST_V0, returns=(TEXT,))
    def v0_chat(self, ctx: CallContext, request: dict[str, Any]) -> str:
        prompts = [m["content"] for m in request["messages"] if "user" in m["role"]]
        return answer(request["model"], prompts)

    @update(CHAT_REQUEST_V1, returns=(CHAT_RESPONSE_V1,))
    def v1_chat(self, ctx: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        prompts = [m["user"]["content"] for m in request["messages"] if "user" in m]
        return {"message": {"content": answer(request["model"], prompts), "tool_calls": []}}


def answer(model: str, prompts: list[str]) -> str:
    """What the hosted model "says": its name, the last user message's first words and a digest."""
    if model not in MODELS:
        raise Trap(f"Unsupported model: {model}")
    if not prompts:
        raise Trap("No user message to answer")
    digest = hashlib.sha256(f"{model}\n{prompts[-1]}".encode()).hexdigest()[:8]
    return " ".join(["icsim", model, "answers", *prompts[-1].split()[:6], digest])
