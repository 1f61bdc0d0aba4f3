"""What the IC keeps about a canister besides its code: cycles, settings, and the fees it is charged.

Fees are those of a 13-node application subnet (FACTS.md §2, dfinity/portal cycles-cost-formulas):
1.2 M cycles per ingress message + 2,000 per byte of it, 5 M per executed update + 1 per instruction,
storage 127 K cycles per GiB per second (which gives `idle_cycles_burned_per_day`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

INGRESS_MESSAGE_FEE = 1_200_000
INGRESS_BYTE_FEE = 2_000
UPDATE_EXECUTION_FEE = 5_000_000
CYCLES_PER_INSTRUCTION = 1
STORAGE_FEE_PER_GIB_SECOND = 127_000
SECONDS_PER_DAY = 86_400
GIB = 1024**3

DEFAULT_CYCLES = 100_000_000_000_000  # 100 T: enough for many gigabytes of uploads
DEFAULT_FREEZING_THRESHOLD_S = 2_592_000  # 30 days, the IC's default
DEFAULT_WASM_MEMORY_LIMIT = 3 * GIB  # what the IC sets on new canisters
WASM32_HEAP_BYTES = 4 * GIB
UPDATE_INSTRUCTION_LIMIT = 40_000_000_000
QUERY_INSTRUCTION_LIMIT = 5_000_000_000


class OutOfCycles(Exception):
    """The canister cannot pay for a message and stay above its freezing threshold (IC0207)."""


def ingress_fee(message_bytes: int) -> int:
    return INGRESS_MESSAGE_FEE + INGRESS_BYTE_FEE * message_bytes


def execution_fee(instructions: int) -> int:
    return UPDATE_EXECUTION_FEE + CYCLES_PER_INSTRUCTION * instructions


def idle_cycles_per_day(memory_bytes: int) -> int:
    return memory_bytes * STORAGE_FEE_PER_GIB_SECOND * SECONDS_PER_DAY // GIB


@dataclass
class SystemState:
    """One canister's balance and settings (the part of `canister_status` the IC itself keeps)."""

    cycles: int = DEFAULT_CYCLES
    freezing_threshold: int = DEFAULT_FREEZING_THRESHOLD_S
    wasm_memory_limit: int = DEFAULT_WASM_MEMORY_LIMIT  # 0: no limit below the 4 GiB wasm32 heap
    charged: int = 0  # every cycle taken so far (tests compare estimates with it)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def freezing_reserve(self, memory_bytes: int) -> int:
        """Cycles the canister must keep: its idle burn over the freezing threshold."""
        return idle_cycles_per_day(memory_bytes) * self.freezing_threshold // SECONDS_PER_DAY

    def charge(self, amount: int, memory_bytes: int) -> None:
        """Take `amount`, or raise OutOfCycles when that would leave less than the freezing reserve."""
        with self._lock:
            if self.cycles - amount < self.freezing_reserve(memory_bytes):
                raise OutOfCycles
            self.cycles -= amount
            self.charged += amount

    def charge_after(self, amount: int) -> None:
        """Take the cost of work already done (never below zero)."""
        with self._lock:
            taken = min(amount, self.cycles)
            self.cycles -= taken
            self.charged += taken

    def top_up(self, amount: int) -> None:
        with self._lock:
            self.cycles += amount

    def heap_limit(self) -> int:
        return self.wasm_memory_limit or WASM32_HEAP_BYTES
