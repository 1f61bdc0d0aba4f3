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
from tests.icsim.system import QUERY_INSTRUCTION_LIMIT, UPDATE_INSTRUCTION_LIMIT, SystemState

# Instructions any message costs: the runtime's entry, Candid decoding of its argument, encoding the reply.
BASE_INSTRUCTIONS = 1_000_000
DECODE_INSTRUCTIONS_PER_BYTE = 2
MODULE_BYTES = 8 * 1024 * 1024  # code, globals and the allocator's own heap of an installed module


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


class Execution:
    """What one message used: instructions (trapping past the limit) and, for chunk calls, the offset."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.instructions = 0
        self.offset: int | None = None

    def charge(self, instructions: int) -> None:
        self.instructions += instructions
        if self.instructions > self.limit:
            raise InstructionLimit(self.limit)


class InstructionLimit(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"Canister exceeded the limit of {limit} instructions for single message execution.")


@dataclass(frozen=True)
class CallContext:
    caller: bytes
    is_controller: bool
    is_query: bool
    execution: Execution = field(default_factory=lambda: Execution(UPDATE_INSTRUCTION_LIMIT))

    @classmethod
    def for_message(cls, caller: bytes, is_controller: bool, is_query: bool) -> CallContext:
        limit = QUERY_INSTRUCTION_LIMIT if is_query else UPDATE_INSTRUCTION_LIMIT
        return cls(caller, is_controller, is_query, Execution(limit))


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
    """Per method calls; per buffer (file, heap buffer) bytes received in all (`bytes_in`) and since the
    buffer was last emptied (`buffer_bytes`: reset, truncation, store, upgrade of a heap buffer)."""

    calls: Counter[str] = field(default_factory=Counter)
    bytes_in: Counter[str] = field(default_factory=Counter)
    buffer_bytes: Counter[str] = field(default_factory=Counter)

    def received(self, buffer: str, n: int) -> None:
        self.bytes_in[buffer] += n
        self.buffer_bytes[buffer] += n

    def emptied(self, buffer: str) -> None:
        self.buffer_bytes.pop(buffer, None)


class CanisterModel:
    """A Python model of one canister. Subclasses declare methods with @update/@query.

    Methods take (self, ctx, *decoded_args) and return the reply values as a tuple (or one value when the
    method has exactly one return type). Heap state lives in attributes set by `reset_heap`; stable state
    in attributes set by `__init__` (and files under `stable_dir`).
    """

    kind: ClassVar[str]
    buffers_survive_upgrade: ClassVar[bool] = False  # True when its upload buffers are stable memory

    def __init__(self, canister_id: bytes, controllers: list[bytes], stable_dir: Path) -> None:
        self.canister_id = canister_id
        self.controllers = list(controllers)
        self.stable_dir = stable_dir
        self.stable_dir.mkdir(parents=True, exist_ok=True)
        self.module_version = 1
        self.counters = Counters()
        self.system = SystemState()
        self.reset_heap()

    # ---- lifecycle -------------------------------------------------------

    def reset_heap(self) -> None:
        """Set every heap attribute to its fresh-install value."""

    def upgrade(self) -> None:
        self.module_version += 1
        self.reset_heap()
        if not self.buffers_survive_upgrade:
            self.counters.buffer_bytes.clear()

    def heap_bytes(self) -> int:
        """Wasm heap in use beyond the module's own (models override: buffers, a loaded model)."""
        return 0

    def stable_memory_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.stable_dir.rglob("*") if p.is_file())

    def memory_size(self) -> int:
        """What canister_status reports and storage is charged for: module, heap, stable files."""
        return MODULE_BYTES + self.heap_bytes() + self.stable_memory_bytes()

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
            ctx.execution.charge(BASE_INSTRUCTIONS + DECODE_INSTRUCTIONS_PER_BYTE * len(arg))
            values = candid.decode(arg, list(method.args))
            if values and isinstance(values[0], dict) and isinstance(values[0].get("offset"), int):
                ctx.execution.offset = values[0]["offset"]
            result = method.function(self, ctx, *values)
        except CandidDecodeError as exc:
            raise self.trapped(f"failed to decode the argument of '{method_name}': {exc}") from exc
        except Trap as exc:
            raise self.trapped(str(exc)) from exc
        except InstructionLimit as exc:
            raise Reject(5, f"Error from Canister {self.canister_text}: {exc}", "IC0522") from exc
        if isinstance(result, OffContractReply):
            return candid.encode(list(result.types), list(result.values))
        replies = list(result) if len(method.returns) != 1 else [result]
        return candid.encode(list(method.returns), replies)

    def trapped(self, message: str) -> Reject:
        return Reject(5, f"Error from Canister {self.canister_text}: Canister trapped: {message}", "IC0503")

    @property
    def canister_text(self) -> str:
        return to_text(self.canister_id)
