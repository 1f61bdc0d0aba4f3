"""One subnet's replicated state machine: ingress queue, blocks, execution, cycles, request statuses,
certified state (signed by the subnet's key, with the root key's delegation unless it is subnet 0)."""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tests.icsim import management
from tests.icsim.candid import leb128
from tests.icsim.canisters.base import CallContext, CanisterModel, Reject
from tests.icsim.certify import tagged
from tests.icsim.envelope import Envelope, EnvelopeError
from tests.icsim.faults import Faults
from tests.icsim.hashtree import Node, State, build
from tests.icsim.principal import MANAGEMENT_CANISTER, to_text
from tests.icsim.statustree import RequestStatusTree
from tests.icsim.subnet import SubnetInfo, registry_state
from tests.icsim.system import UPDATE_EXECUTION_FEE, OutOfCycles, execution_fee, ingress_fee

MAX_MESSAGES_PER_BLOCK = 1000
UPDATE_THREADS_PER_SUBNET = 4  # canisters of one subnet executing at the same time (FACTS.md §2)
TERMINAL = ("replied", "rejected")
FORGET_AFTER_EXPIRY_NS = 5 * 60 * 1_000_000_000
DEFAULT_INGRESS_POOL_BYTES = 64 * 1024 * 1024
# What the replica answers (HTTP 503) while its ingress pool is over its threshold
# (dfinity/ic rs/http_endpoints/public/src/call.rs, IngressValidator::validate_ingress_message).
OVERLOADED_STATUS = 503
OVERLOADED_MESSAGE = "Service is overloaded, try again later."


@dataclass
class BlockConfig:
    interval: float = 0.0
    ingress_bytes: int = 4 * 1024 * 1024
    latency: float = 0.0
    background_load: float = 0.0  # share of every block's ingress taken by other users' messages
    # New calls are refused for load while this many bytes wait for a block (the subnet's ingress pool).
    ingress_pool_bytes: int = DEFAULT_INGRESS_POOL_BYTES
    latency_jitter: float = 0.0  # each call's latency is drawn from latency ± this (seeded, uniform)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.background_load <= 0.9:
            raise ValueError(f"background_load must be within 0..0.9, not {self.background_load}")
        if self.ingress_pool_bytes < 1 or self.latency_jitter < 0:
            raise ValueError("ingress_pool_bytes must be positive and latency_jitter not negative")

    @property
    def our_bytes(self) -> int:
        return int(self.ingress_bytes * (1.0 - self.background_load))

    @property
    def our_messages(self) -> int:
        return max(1, int(MAX_MESSAGES_PER_BLOCK * (1.0 - self.background_load)))


@dataclass(frozen=True)
class ExecutedUpdate:
    """One executed update message (test hook for exactly-once checks)."""

    canister: str
    method: str
    arg_size: int
    offset: int | None  # the `offset` field of a chunk call's argument
    outcome: str  # "replied" | "rejected"
    instructions: int


@dataclass
class Observations:
    """What tests of exactly-once and of cycles read, shared by every subnet."""

    updates: list[ExecutedUpdate] = field(default_factory=list)
    refused_for_cycles: int = 0
    refused_for_load: int = 0  # calls answered "overloaded" because the ingress pool was full
    peak_queued_bytes: int = 0  # most bytes left waiting after a block took its share (any subnet)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def executed(self, update: ExecutedUpdate) -> None:
        with self._lock:
            self.updates.append(update)

    def refused(self) -> None:
        with self._lock:
            self.refused_for_cycles += 1

    def overloaded(self) -> None:
        with self._lock:
            self.refused_for_load += 1

    def queued_after_block(self, nbytes: int) -> None:
        with self._lock:
            self.peak_queued_bytes = max(self.peak_queued_bytes, nbytes)


@dataclass(frozen=True)
class BlockStats:
    messages: int
    ingress_bytes: int
    queued_bytes: int = 0  # what was left waiting for later blocks
    at: float = 0.0  # monotonic time the block was made


@dataclass
class RequestRecord:
    request_id: bytes
    sender: bytes
    canister_id: bytes
    method_name: str
    size: int
    expiry_ns: int
    arg: bytes = b""
    target: bytes = b""  # the canister that executes it (the effective canister of a management call)
    status: str = "received"
    reply: bytes | None = None
    reject: Reject | None = None
    visible_at: float = 0.0
    finished: threading.Event = field(default_factory=threading.Event)
    _subtree: tuple[str, Node] | None = None

    def status_subtree(self, status: str) -> Node:
        """The request_status/<id> subtree for `status`, built once per status."""
        if self._subtree is None or self._subtree[0] != status:
            self._subtree = (status, build(_status_state(self, status)))
        return self._subtree[1]

    def certified_status(self, now: float, now_ns: int | None = None) -> str:
        """The status read_state shows at monotonic time `now` (and wall-clock `now_ns`)."""
        if self.status in TERMINAL:
            if now < self.visible_at:
                return "processing"
            if (now_ns if now_ns is not None else time.time_ns()) > self.expiry_ns:
                return "done"
        return self.status


class Replica:
    """`registry`: every subnet (for `/subnet` in the state tree); `delegation`: None on subnet 0."""

    def __init__(
        self,
        subnet: SubnetInfo,
        canisters: list[CanisterModel],
        blocks: BlockConfig,
        faults: Faults,
        *,
        registry: list[SubnetInfo] | None = None,
        delegation: dict[str, Any] | None = None,
        observations: Observations | None = None,
    ):
        self.subnet = subnet
        self.canisters = {c.canister_id: c for c in canisters}
        self.blocks = blocks
        self.faults = faults
        self.registry = registry if registry is not None else [subnet]
        self.delegation = delegation
        self.observations = observations or Observations()
        self.subnet_id = subnet.subnet_id
        self.node_key = subnet.node_key
        self._pool: ThreadPoolExecutor | None = None
        self._canister_locks = {cid: threading.Lock() for cid in self.canisters}
        self._lock = threading.Condition()
        self._requests: dict[bytes, RequestRecord] = {}
        self._queue: deque[RequestRecord] = deque()
        self._queued_bytes = 0
        self._latency_draws = random.Random(blocks.seed * 1000 + subnet.index)
        self._running = False
        self._thread: threading.Thread | None = None
        self.block_log: list[BlockStats] = []
        self._status_tree = RequestStatusTree()
        self._status_tree_lock = threading.Lock()  # certificates are made by many handler threads
        self.executed = 0

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._block_loop, name="icsim-blocks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._running = False
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def drop_in_flight(self) -> int:
        """Forget messages accepted but not yet executed (what a restart loses)."""
        with self._lock:
            lost = list(self._queue)
            self._queue.clear()
            self._queued_bytes = 0
            for record in lost:
                self._requests.pop(record.request_id, None)
                record.finished.set()
            return len(lost)

    # ---- ingress ----------------------------------------------------------------------

    def canister_lock(self, canister_id: bytes) -> threading.Lock:
        return self._canister_locks[canister_id]

    def canister(self, canister_id: bytes) -> CanisterModel:
        model = self.canisters.get(canister_id)
        if model is None:
            raise EnvelopeError(400, f"IC0301: Canister {to_text(canister_id)} not found")
        return model

    def submit(self, envelope: Envelope, size: int, target: bytes) -> RequestRecord:
        """Accept a call (its induction fee is charged); an identical request already known is not
        executed again. `target`: the effective canister id (the callee, unless it is `aaaaa-aa`)."""
        model = self.canister(target)
        with self._lock:
            # The replica answers a request it knows as that request, whatever the canister's state now.
            known = self._requests.get(envelope.request_id)
            if known is not None:
                return known
        if self.faults.is_out_of_cycles(model.canister_id):
            self.observations.refused()
            raise EnvelopeError(400, f"IC0207: {out_of_cycles_message(model)}")
        with self._lock:
            known = self._requests.get(envelope.request_id)
            if known is not None:
                return known
            if self._queued_bytes + size > self.blocks.ingress_pool_bytes:
                self.observations.overloaded()
                raise EnvelopeError(OVERLOADED_STATUS, OVERLOADED_MESSAGE)
            if envelope.canister_id != MANAGEMENT_CANISTER:
                self._charge_induction(model, envelope)
            record = RequestRecord(
                envelope.request_id, envelope.sender, envelope.canister_id, envelope.method_name, size,
                envelope.ingress_expiry, arg=envelope.arg, target=model.canister_id,
            )  # fmt: skip
            self._requests[record.request_id] = record
            self._queue.append(record)
            self._queued_bytes += size
            self._lock.notify_all()
            return record

    def _charge_induction(self, model: CanisterModel, envelope: Envelope) -> None:
        fee = ingress_fee(len(envelope.arg) + len(envelope.method_name))
        try:
            model.system.charge(fee, model.memory_size())
        except OutOfCycles:
            self.observations.refused()
            raise EnvelopeError(400, f"IC0207: {out_of_cycles_message(model)}") from None

    def wait(self, record: RequestRecord, timeout: float) -> bool:
        """Wait until the record's terminal status is certified; False on timeout."""
        deadline = time.monotonic() + timeout
        if not record.finished.wait(timeout):
            return False
        remaining = record.visible_at - time.monotonic()
        if remaining > 0:
            if remaining > deadline - time.monotonic():
                return False
            time.sleep(remaining)
        return record.status in TERMINAL

    def query(self, envelope: Envelope) -> bytes | Reject:
        model = self.canisters.get(envelope.canister_id)
        if model is None:
            return Reject(3, f"Canister {to_text(envelope.canister_id)} not found", "IC0301")
        if self.faults.is_out_of_cycles(model.canister_id):
            return Reject(2, out_of_cycles_message(model), "IC0207")
        ctx = CallContext.for_message(envelope.sender, envelope.sender in model.controllers, is_query=True)
        with self._canister_locks[model.canister_id]:
            try:
                return model.execute(envelope.method_name, envelope.arg, ctx)
            except Reject as reject:
                return reject

    # ---- blocks -----------------------------------------------------------------------

    def _block_loop(self) -> None:
        epoch = next_block = time.monotonic()
        while True:
            with self._lock:
                while self._running and not self._queue:
                    self._lock.wait()
                next_block = self._next_tick(epoch, next_block)
                while self._running and time.monotonic() < next_block:
                    self._lock.wait(next_block - time.monotonic())
                if not self._running:
                    return
                batch = self._take_block()
                left = self._queued_bytes
            started = time.monotonic()
            self.observations.queued_after_block(left)
            self._execute_block(batch)
            self.block_log.append(BlockStats(len(batch), sum(r.size for r in batch), left, started))
            next_block = started + self.blocks.interval

    def _next_tick(self, epoch: float, next_block: float) -> float:
        """Blocks come on a fixed cadence: a message arriving while idle waits for the next tick."""
        now = time.monotonic()
        interval = self.blocks.interval
        if interval <= 0 or next_block >= now:
            return next_block
        return epoch + math.ceil((now - epoch) / interval) * interval

    def _take_block(self) -> list[RequestRecord]:
        """The next block's messages: FIFO, at most the ingress byte cap and 1000 messages, less what
        other users' messages take (call locked)."""
        batch: list[RequestRecord] = []
        total = 0
        while self._queue and len(batch) < self.blocks.our_messages:
            size = self._queue[0].size
            if batch and total + size > self.blocks.our_bytes:
                break
            batch.append(self._queue.popleft())
            total += size
            self._queued_bytes -= size
        return batch

    def _execute_block(self, batch: list[RequestRecord]) -> None:
        """Each canister's messages in order, one at a time; a few canisters at once (UPDATE_THREADS_...)."""
        by_canister: dict[bytes, list[RequestRecord]] = {}
        for record in batch:
            by_canister.setdefault(record.target, []).append(record)
        if len(by_canister) <= 1:
            for record in batch:
                self._execute(record)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(UPDATE_THREADS_PER_SUBNET, thread_name_prefix="icsim-exec")
        runs = [
            self._pool.submit(lambda rs=records: [self._execute(r) for r in rs])
            for records in by_canister.values()
        ]
        for run in runs:
            run.result()

    def _execute(self, record: RequestRecord) -> None:
        if time.time_ns() > record.expiry_ns:
            with self._lock:
                self._requests.pop(record.request_id, None)
            record.finished.set()
            return
        model = self.canisters[record.target]
        record.status = "processing"
        ctx = CallContext.for_message(record.sender, record.sender in model.controllers, is_query=False)
        reply: bytes | None = None
        reject: Reject | None = None
        with self._canister_locks[model.canister_id]:
            try:
                reply = self._run(model, record, ctx)
            except Reject as rejected:
                reject = rejected
        self.observations.executed(
            ExecutedUpdate(
                model.canister_text if record.canister_id else "aaaaa-aa", record.method_name,
                len(record.arg), ctx.execution.offset, "rejected" if reject else "replied",
                ctx.execution.instructions,
            )
        )  # fmt: skip
        # visible_at first: a reader seeing the terminal status must also see when it becomes certified.
        record.visible_at = time.monotonic() + self._latency()
        record.reply, record.reject, record.arg = reply, reject, b""
        record.status = "rejected" if reject is not None else "replied"
        self.executed += 1
        record.finished.set()

    def _latency(self) -> float:
        jitter = self.blocks.latency_jitter
        if not jitter:
            return self.blocks.latency
        return max(0.0, self.blocks.latency + self._latency_draws.uniform(-jitter, jitter))

    def _run(self, model: CanisterModel, record: RequestRecord, ctx: CallContext) -> bytes:
        """Execute one update (call locked): management calls act on `model`; a canister's own calls pay
        the execution fee first (IC0207 when it would fall below its freezing threshold), then per
        instruction, also when it traps."""
        if record.canister_id == MANAGEMENT_CANISTER:
            return management.execute(model, record.method_name, record.arg, ctx)
        try:
            model.system.charge(UPDATE_EXECUTION_FEE, model.memory_size())
        except OutOfCycles:
            self.observations.refused()
            raise Reject(2, out_of_cycles_message(model), "IC0207") from None
        try:
            if self.faults.take_trap(record.canister_id, record.method_name):
                raise model.trapped(f"icsim injected a trap in '{record.method_name}'")
            return model.execute(record.method_name, record.arg, ctx)
        finally:
            used = min(ctx.execution.instructions, ctx.execution.limit)
            model.system.charge_after(execution_fee(used) - UPDATE_EXECUTION_FEE)

    # ---- certified state --------------------------------------------------------------

    def _request_status_tree(self, records: list[RequestRecord], now: float) -> Node:
        now_ns = time.time_ns()
        entries = {r.request_id: (r.certified_status(now, now_ns), r.status_subtree) for r in records}
        with self._status_tree_lock:
            return self._status_tree.tree(entries)

    def _forget_old_requests(self) -> None:
        """Like the replica, drop request statuses some time after their expiry (call locked)."""
        horizon = time.time_ns() - FORGET_AFTER_EXPIRY_NS
        for rid in [
            rid for rid, r in self._requests.items() if r.expiry_ns < horizon and r.finished.is_set()
        ]:
            del self._requests[rid]

    def record(self, request_id: bytes) -> RequestRecord | None:
        with self._lock:
            return self._requests.get(request_id)

    def certificate(self, paths: list[list[bytes]], canister_id: bytes | None) -> bytes:
        """A certificate revealing `paths`; like the replica's, it always shows `time`."""
        return self.subnet.key.certificate(
            self.state_tree(canister_id), [[b"time"], *paths], delegation=self.delegation
        )

    def state_tree(self, canister_id: bytes | None) -> State:
        """The certified state: time, request statuses, canister info (for this canister) and subnet."""
        now = time.monotonic()
        with self._lock:
            self._forget_old_requests()
            records = list(self._requests.values())
        statuses = self._request_status_tree(records, now)
        state: State = {b"time": leb128(time.time_ns()), b"request_status": statuses}
        canisters: State = {}
        for cid, model in self.canisters.items():
            if canister_id is None or cid == canister_id:
                canisters[cid] = {
                    b"module_hash": model.module_hash,
                    b"controllers": tagged(list(model.controllers)),
                    b"metadata": {b"candid:service": model.candid_service().encode()},
                }
        state[b"canister"] = canisters
        state.update(registry_state(self.registry))
        return state


def out_of_cycles_message(model: CanisterModel) -> str:
    return f"Canister {model.canister_text} is out of cycles: please top up the canister with cycles"


def _status_state(record: RequestRecord, status: str) -> State:
    subtree: State = {b"status": status.encode()}
    if status == "replied" and record.reply is not None:
        subtree[b"reply"] = record.reply
    elif status == "rejected" and record.reject is not None:
        subtree[b"reject_code"] = leb128(record.reject.code)
        subtree[b"reject_message"] = record.reject.message.encode()
        subtree[b"error_code"] = record.reject.error_code.encode()
    return subtree
