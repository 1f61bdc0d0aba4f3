"""The management canister `aaaaa-aa`: canister_status and update_settings, as the IC's interface spec
declares them. Ingress calls to it name the target canister as their effective canister id."""

from __future__ import annotations

from typing import Any

from tests.icsim import candid
from tests.icsim.candid import BLOB, NAT, NAT64, NULL, PRINCIPAL, CandidDecodeError, Opt, Vec, record, variant
from tests.icsim.canisters.base import CallContext, CanisterModel, Reject
from tests.icsim.principal import to_text
from tests.icsim.system import idle_cycles_per_day

MAX_CONTROLLERS = 10
MAX_WASM_MEMORY_LIMIT = 2**48  # the IC's bound on the setting (it is not clamped to the heap)

CANISTER_ID_ARG = record(canister_id=PRINCIPAL)
LOG_VISIBILITY = variant(controllers=NULL, public=NULL, allowed_viewers=Vec(PRINCIPAL))
DEFINITE_SETTINGS = record(
    controllers=Vec(PRINCIPAL), compute_allocation=NAT, memory_allocation=NAT, freezing_threshold=NAT,
    reserved_cycles_limit=NAT, log_visibility=LOG_VISIBILITY, wasm_memory_limit=NAT,
    wasm_memory_threshold=NAT,
)  # fmt: skip
QUERY_STATS = record(
    num_calls_total=NAT, num_instructions_total=NAT, request_payload_bytes_total=NAT,
    response_payload_bytes_total=NAT,
)  # fmt: skip
CANISTER_STATUS = record(
    status=variant(running=NULL, stopping=NULL, stopped=NULL), settings=DEFINITE_SETTINGS,
    module_hash=Opt(BLOB), memory_size=NAT, cycles=NAT, reserved_cycles=NAT,
    idle_cycles_burned_per_day=NAT, query_stats=QUERY_STATS,
)  # fmt: skip
SETTINGS = record(
    controllers=Opt(Vec(PRINCIPAL)), compute_allocation=Opt(NAT), memory_allocation=Opt(NAT),
    freezing_threshold=Opt(NAT), reserved_cycles_limit=Opt(NAT), log_visibility=Opt(LOG_VISIBILITY),
    wasm_memory_limit=Opt(NAT), wasm_memory_threshold=Opt(NAT),
)  # fmt: skip
UPDATE_SETTINGS_ARG = record(canister_id=PRINCIPAL, settings=SETTINGS, sender_canister_version=Opt(NAT64))

METHODS = ("canister_status", "update_settings")


def target_of(method: str, arg: bytes) -> bytes:
    """The canister a management call is about (its `canister_id` field), checked against the URL's."""
    if method not in METHODS:
        raise Reject(3, f"Management canister has no update method '{method}'", "IC0536")
    try:
        (value,) = candid.decode(arg, [CANISTER_ID_ARG])
    except CandidDecodeError as exc:
        raise Reject(4, f"Error decoding candid of '{method}': {exc}", "IC0504") from exc
    return value["canister_id"]


def execute(model: CanisterModel, method: str, arg: bytes, ctx: CallContext) -> bytes:
    if not ctx.is_controller:
        raise Reject(
            5,
            f"Only the controllers of the canister {model.canister_text} can control it. Canister's "
            f"controllers: {' '.join(to_text(c) for c in model.controllers)}. "
            f"Sender's ID: {to_text(ctx.caller)}",
            "IC0512",
        )
    if method == "canister_status":
        return candid.encode([CANISTER_STATUS], [status(model)])
    try:
        (value,) = candid.decode(arg, [UPDATE_SETTINGS_ARG])
    except CandidDecodeError as exc:
        raise Reject(4, f"Error decoding candid of 'update_settings': {exc}", "IC0504") from exc
    update_settings(model, value["settings"])
    return candid.encode([], [])


def status(model: CanisterModel) -> dict[str, Any]:
    memory = model.memory_size()
    system = model.system
    return {
        "status": {"running": None},
        "settings": {
            "controllers": list(model.controllers),
            "compute_allocation": 0,
            "memory_allocation": 0,
            "freezing_threshold": system.freezing_threshold,
            "reserved_cycles_limit": 5_000_000_000_000,
            "log_visibility": {"controllers": None},
            "wasm_memory_limit": system.wasm_memory_limit,
            "wasm_memory_threshold": 0,
        },
        "module_hash": model.module_hash,
        "memory_size": memory,
        "cycles": system.cycles,
        "reserved_cycles": 0,
        "idle_cycles_burned_per_day": idle_cycles_per_day(memory),
        "query_stats": {
            "num_calls_total": 0,
            "num_instructions_total": 0,
            "request_payload_bytes_total": 0,
            "response_payload_bytes_total": 0,
        },
    }


def update_settings(model: CanisterModel, settings: dict[str, Any]) -> None:
    controllers = settings.get("controllers")
    if controllers is not None and len(controllers) > MAX_CONTROLLERS:
        raise Reject(5, f"Invalid settings: at most {MAX_CONTROLLERS} controllers are allowed", "IC0504")
    limit = settings.get("wasm_memory_limit")
    if limit is not None and limit > MAX_WASM_MEMORY_LIMIT:
        raise Reject(
            5, f"Invalid settings: wasm_memory_limit {limit} exceeds {MAX_WASM_MEMORY_LIMIT}", "IC0504"
        )
    if limit is not None and 0 < limit < model.memory_size() - model.stable_memory_bytes():
        raise Reject(
            5,
            f"Canister {model.canister_text}: wasm_memory_limit {limit} is below the wasm memory in use",
            "IC0504",
        )
    if controllers is not None:
        model.controllers = list(controllers)
    if settings.get("freezing_threshold") is not None:
        model.system.freezing_threshold = settings["freezing_threshold"]
    if limit is not None:
        model.system.wasm_memory_limit = min(limit, MAX_WASM_MEMORY_LIMIT)
