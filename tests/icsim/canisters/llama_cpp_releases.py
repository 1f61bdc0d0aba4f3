"""Older interfaces of onicai's llama_cpp_canister (src/llama_cpp.did at the release tags), so prep can
be tested against what users still run. `IcSim(llama_cpp_interface=...)` / `--llama-cpp-interface`.

- "v0.14": releases v0.6.0 to v0.14.0. RunOutputRecord has no token counts (v0.15.0 added five
  `opt nat64` fields), so chat replies say nothing of how many tokens were generated.
- "v0.5": releases v0.1.0 to v0.5.0. As v0.14, and no `filesystem_file_size` (added in v0.6.0).
"""

from __future__ import annotations

from typing import Any

from tests.icsim.candid import BOOL, NAT16, TEXT, record, variant
from tests.icsim.canisters.base import CallContext, update
from tests.icsim.canisters.llama_cpp import INPUT, LlamaCppCanister

RUN_OUTPUT_V014 = record(
    status_code=NAT16, output=TEXT, conversation=TEXT, error=TEXT, prompt_remaining=TEXT, generated_eog=BOOL
)
RUN_RESULT_V014 = variant(Ok=RUN_OUTPUT_V014, Err=RUN_OUTPUT_V014)


class LlamaCppV014Canister(LlamaCppCanister):
    """llama_cpp_canister v0.6.0 - v0.14.0: chat and load replies without token counts."""

    @update(INPUT, returns=(RUN_RESULT_V014,))
    def load_model(self, ctx: CallContext, arg: dict[str, Any]) -> dict[str, Any]:
        return super().load_model(ctx, arg)

    @update(INPUT, returns=(RUN_RESULT_V014,))
    def remove_prompt_cache(self, ctx: CallContext, arg: dict[str, Any]) -> dict[str, Any]:
        return super().remove_prompt_cache(ctx, arg)

    @update(INPUT, returns=(RUN_RESULT_V014,))
    def new_chat(self, ctx: CallContext, arg: dict[str, Any]) -> dict[str, Any]:
        return super().new_chat(ctx, arg)

    @update(INPUT, returns=(RUN_RESULT_V014,))
    def run_update(self, ctx: CallContext, arg: dict[str, Any]) -> dict[str, Any]:
        return super().run_update(ctx, arg)


class LlamaCppV05Canister(LlamaCppV014Canister):
    """llama_cpp_canister v0.1.0 - v0.5.0: as v0.14, and no filesystem_file_size query."""

    filesystem_file_size = None  # not part of these releases' interface


INTERFACES: dict[str, type[LlamaCppCanister]] = {
    "current": LlamaCppCanister,
    "v0.14": LlamaCppV014Canister,
    "v0.5": LlamaCppV05Canister,
}
