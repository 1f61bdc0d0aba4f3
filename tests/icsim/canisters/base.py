"""What every canister model shares: typed methods, Candid (de)coding, counters, heap vs stable state."""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tests.icsim import candid
from tests.icsim.candid import CandidDecodeError, Type
from tests.icsim.principal import to_text


class Trap(Exception):
    """The canister trapped: the call is rejected with IC0503 and its state changes are kept as they were."""


@dataclass(frozen=True)
class Reject(Exception):
    """A reject the emulator reports to the caller (code, message, IC error code)."""

    code: int
    message: str
    error_code: str

    def __str__(self) -> str:
        return f"{self.error_code}: {self.message}"


@dataclass(frozen=True)
class OffContractReply:
    """A reply whose wire types differ from the method's declared ones (what some canisters really send)."""

    types: tuple[Type, ...]
    values: tuple[Any, ...]


@dataclass(frozen=True)
class CallContext:
    caller: bytes
    is_controller: bool
    is_query: bool


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "update" | "query"
    args: tuple[Type, ...]
    returns: tuple[Type, ...]
    declared_returns: tuple[Type, ...]
    function: Callable[..., Any]

    def did(self) -> str:
        suffix = " query" if self.kind == "query" else ""
        args, returns = candid.did_args(list(self.args)), candid.did_args(list(self.declared_returns))
        return f"{self.name} : {args} -> {returns}{suffix}"


def _method(kind: str, args: tuple[Type, ...], returns: tuple[Type, ...], declared: tuple[Type, ...] | None):
    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        function.__icsim_method__ = (kind, args, returns, declared if declared is not None else returns)  # type: ignore[attr-defined]
        return function

    return wrap


def update(*args: Type, returns: tuple[Type, ...] = (), declared: tuple[Type, ...] | None = None):
    return _method("update", args, returns, declared)


def query(*args: Type, returns: tuple[Type, ...] = (), declared: tuple[Type, ...] | None = None):
    return _method("query", args, returns, declared)


@dataclass
class Counters:
    calls: Counter[str] = field(default_factory=Counter)
    bytes_in: Counter[str] = field(default_factory=Counter)


class CanisterModel:
    """A Python model of one canister. Subclasses declare methods with @update/@query.

    Methods take (self, ctx, *decoded_args) and return the reply values as a tuple (or one value when the
    method has exactly one return type). Heap state lives in attributes set by `reset_heap`; stable state
    in attributes set by `__init__` (and files under `stable_dir`).
    """

    kind: ClassVar[str]

    def __init__(self, canister_id: bytes, controllers: list[bytes], stable_dir: Path) -> None:
        self.canister_id = canister_id
        self.controllers = list(controllers)
        self.stable_dir = stable_dir
        self.stable_dir.mkdir(parents=True, exist_ok=True)
        self.module_version = 1
        self.counters = Counters()
        self.reset_heap()

    # ---- lifecycle -------------------------------------------------------

    def reset_heap(self) -> None:
        """Set every heap attribute to its fresh-install value."""

    def upgrade(self) -> None:
        self.module_version += 1
        self.reset_heap()

    @property
    def module_hash(self) -> bytes:
        return hashlib.sha256(f"icsim {self.kind} module v{self.module_version}".encode()).digest()

    # ---- interface -------------------------------------------------------

    @classmethod
    @functools.cache
    def methods(cls) -> dict[str, Method]:
        found: dict[str, Method] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                spec = getattr(value, "__icsim_method__", None)
                if spec is not None:
                    kind, args, returns, declared = spec
                    found[name] = Method(name, kind, args, returns, declared, value)
                elif value is None:  # a subclass modelling a release without this method
                    found.pop(name, None)
        return found

    @classmethod
    @functools.cache
    def candid_service(cls) -> str:
        lines = [f"  {m.did()};" for m in sorted(cls.methods().values(), key=lambda m: m.name)]
        return "service : {\n" + "\n".join(lines) + "\n}\n"

    def execute(self, method_name: str, arg: bytes, ctx: CallContext) -> bytes:
        """Run one message; raises Reject for anything the caller sees as a reject."""
        method = self.methods().get(method_name)
        if method is None or (ctx.is_query and method.kind != "query"):
            kind = "query" if ctx.is_query else "update"
            raise Reject(3, f"Canister {self.canister_text} has no {kind} method '{method_name}'", "IC0536")
        self.counters.calls[method_name] += 1
        try:
            values = candid.decode(arg, list(method.args))
        except CandidDecodeError as exc:
            raise self.trapped(f"failed to decode the argument of '{method_name}': {exc}") from exc
        try:
            result = method.function(self, ctx, *values)
        except Trap as exc:
            raise self.trapped(str(exc)) from exc
        if isinstance(result, OffContractReply):
            return candid.encode(list(result.types), list(result.values))
        replies = list(result) if len(method.returns) != 1 else [result]
        return candid.encode(list(method.returns), replies)

    def trapped(self, message: str) -> Reject:
        return Reject(5, f"Error from Canister {self.canister_text}: Canister trapped: {message}", "IC0503")

    @property
    def canister_text(self) -> str:
        return to_text(self.canister_id)
