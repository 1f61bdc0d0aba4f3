"""What a live canister is: module hash, controllers, which canister kinds its Candid matches, readiness."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from pipeline.errors import PrepError
from pipeline.ic import candid
from pipeline.ic.client import IcClient
from pipeline.ic.errors import CallRejected, PermanentIcError
from pipeline.ic.management import CanisterStatus, canister_status

READINESS_METHODS = ("ready", "health")


class KindVerdict(Protocol):
    """Whether prep can drive the canister as one kind (pipeline.targets.interface decides)."""

    kind: str
    matches: bool
    problems: tuple[str, ...]
    fallbacks: tuple[str, ...]  # optional methods it lacks, and what prep does instead


@dataclass(frozen=True)
class Readiness:
    method: str
    ready: bool
    detail: str


@dataclass(frozen=True)
class CanisterInfo:
    canister_id: str
    network_url: str
    module_hash: str | None  # hex; None when no code is installed
    controllers: tuple[str, ...] | None  # None when the replica would not tell
    has_candid_service: bool  # False when the metadata is absent or private
    kinds: tuple[KindVerdict, ...]
    readiness: Readiness | None
    subnet: str | None = None  # the hosting subnet's principal, when certificates show it
    status: CanisterStatus | None = None  # cycles, memory, settings: only a controller may read them

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.to_dict() if self.status is not None else None
        return data

    @property
    def matching_kinds(self) -> list[str]:
        return [k.kind for k in self.kinds if k.matches]


def live_interface(client: IcClient, canister_id: str) -> candid.ServiceInterface | None:
    """The canister's own Candid interface from its candid:service metadata, if it publishes one."""
    text = _candid_service_text(client, canister_id)
    return candid.parse_service(text, f"candid:service of {canister_id}") if text is not None else None


def inspect_canister(
    client: IcClient,
    canister_id: str,
    judge_kinds: Callable[[candid.ServiceInterface], Sequence[KindVerdict]],
) -> CanisterInfo:
    module_hash = client.module_hash(canister_id)
    try:
        controllers = client.controllers(canister_id)
    except PermanentIcError:
        controllers = None
    else:
        if controllers is None and module_hash is None:  # every canister that exists has controllers
            raise PrepError(
                f"canister {canister_id} does not exist on {client.network.url}",
                hint="check --canister and --network",
            )
    live = live_interface(client, canister_id)
    return CanisterInfo(
        canister_id=canister_id,
        network_url=client.network.url,
        module_hash=module_hash.hex() if module_hash is not None else None,
        controllers=tuple(controllers) if controllers is not None else None,
        has_candid_service=live is not None,
        kinds=tuple(judge_kinds(live)) if live is not None else (),
        readiness=probe_readiness(client, canister_id, live) if live is not None else None,
        subnet=client.subnet_of(canister_id),
        status=canister_status(client, canister_id) if client.principal in (controllers or ()) else None,
    )


def probe_readiness(client: IcClient, canister_id: str, live: candid.ServiceInterface) -> Readiness | None:
    """Ask `ready` (or `health`) when the canister has it as an argument-less query."""
    for name in READINESS_METHODS:
        method = live.methods.get(name)
        if method is None or not method.is_query or method.args:
            continue
        try:
            reply = client.query(canister_id, name, candid.encode([], []))
            values = candid.decode(reply, list(method.rets))
        except CallRejected as err:
            return Readiness(name, False, err.reject_message)
        except candid.CandidError as err:
            return Readiness(name, False, str(err))
        return _readiness_from_reply(name, values[0] if values else None)
    return None


def _readiness_from_reply(method: str, value: Any) -> Readiness:
    if isinstance(value, dict) and len(value) == 1:
        ((tag, payload),) = value.items()
        if tag == "Ok":
            return Readiness(method, True, _describe(payload))
        if tag == "Err":
            return Readiness(method, False, _describe(payload))
    if isinstance(value, bool):
        return Readiness(method, value, str(value))
    return Readiness(method, True, _describe(value))


def _describe(value: Any) -> str:
    if isinstance(value, dict) and len(value) == 1:
        ((tag, payload),) = value.items()
        return f"{tag}: {_describe(payload)}" if payload is not None else str(tag)
    return "" if value is None else str(value)


def _candid_service_text(client: IcClient, canister_id: str) -> str | None:
    try:
        raw = client.metadata(canister_id, "candid:service")
    except PermanentIcError:
        return None  # private metadata is refused to non-controllers
    return raw.decode("utf-8", "replace") if raw is not None else None
