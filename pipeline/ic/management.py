"""The management canister (`aaaaa-aa`): a canister's status (balance, memory, settings) and its settings.

Both are controller-only update calls; the IC routes them by their effective canister id, which must be
the canister they are about.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from icp_principal import Principal

from pipeline.ic import candid
from pipeline.ic.client import IcClient

MANAGEMENT_CANISTER = "aaaaa-aa"
SECONDS_PER_DAY = 86_400
WASM32_HEAP_BYTES = 4 * 1024**3

_CANISTER_ID_ARG = "record { canister_id : principal }"
# The fields prep reads; the IC sends more (Candid subtyping drops them).
_STATUS_REPLY = (
    "record { status : variant { running; stopping; stopped }; module_hash : opt blob; memory_size : nat;"
    " cycles : nat; idle_cycles_burned_per_day : nat; settings : record { controllers : vec principal;"
    " freezing_threshold : nat; wasm_memory_limit : nat } }"
)
_UPDATE_SETTINGS_ARG = (
    "record { canister_id : principal; settings : record { wasm_memory_limit : opt nat;"
    " freezing_threshold : opt nat } }"
)


@dataclass(frozen=True)
class CanisterStatus:
    status: str  # running | stopping | stopped
    module_hash: str | None  # hex
    controllers: tuple[str, ...]
    memory_size: int  # bytes
    cycles: int
    freezing_threshold: int  # seconds of idle burn the canister must keep
    wasm_memory_limit: int  # bytes; 0 means only the 4 GiB wasm32 heap limits it
    idle_cycles_burned_per_day: int

    @property
    def freezing_reserve(self) -> int:
        """Cycles below which the canister freezes and refuses messages (IC0207)."""
        return self.idle_cycles_burned_per_day * self.freezing_threshold // SECONDS_PER_DAY

    @property
    def heap_limit(self) -> int:
        return self.wasm_memory_limit or WASM32_HEAP_BYTES

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "freezing_reserve": self.freezing_reserve}


def canister_status(client: IcClient, canister_id: str) -> CanisterStatus:
    arg = candid.encode([_CANISTER_ID_ARG], [{"canister_id": Principal.from_str(canister_id)}])
    raw = client.call(MANAGEMENT_CANISTER, "canister_status", arg, effective_canister_id=canister_id)
    (reply,) = candid.decode(raw, [_STATUS_REPLY])
    settings = reply["settings"]
    module_hash = reply["module_hash"]
    return CanisterStatus(
        status=next(iter(reply["status"])),
        module_hash=bytes(module_hash).hex() if module_hash is not None else None,
        controllers=tuple(settings["controllers"]),
        memory_size=reply["memory_size"],
        cycles=reply["cycles"],
        freezing_threshold=settings["freezing_threshold"],
        wasm_memory_limit=settings["wasm_memory_limit"],
        idle_cycles_burned_per_day=reply["idle_cycles_burned_per_day"],
    )


def update_settings(
    client: IcClient,
    canister_id: str,
    *,
    wasm_memory_limit: int | None = None,
    freezing_threshold: int | None = None,
) -> None:
    """Changes only the settings given (the others keep their values)."""
    settings = {"wasm_memory_limit": wasm_memory_limit, "freezing_threshold": freezing_threshold}
    value = {"canister_id": Principal.from_str(canister_id), "settings": settings}
    arg = candid.encode([_UPDATE_SETTINGS_ARG], [value])
    client.call(MANAGEMENT_CANISTER, "update_settings", arg, effective_canister_id=canister_id)
