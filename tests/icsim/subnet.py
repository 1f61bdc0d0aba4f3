"""Subnets as the registry knows them: a threshold BLS key, canister id ranges, nodes; and the delegation
by which the root key vouches for an application subnet's key (the mainnet certificate form).

Subnet 0 signs with the root key itself, like the NNS subnet; the others sign with their own key and
attach a delegation: a root-signed certificate revealing `/subnet/<id>/public_key` and the subnet's
canister ranges, in the encodings agents read: `/subnet/<id>/canister_ranges` (one CBOR list, the
older form) and `/canister_ranges/<id>/<shard>` (lists per shard, labelled by their lowest id).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import cbor2

from tests.icsim.candid import leb128
from tests.icsim.certify import RootKey
from tests.icsim.hashtree import State
from tests.icsim.nodekey import NodeKey
from tests.icsim.principal import canister_id, self_authenticating

CANISTERS_PER_SUBNET_RANGE = 1 << 20  # ids handed to one subnet at a time, as the registry does
RANGE_ENCODINGS = ("both", "flat", "sharded")
CanisterRange = tuple[bytes, bytes]


def subnet_range(index: int) -> CanisterRange:
    first = index * CANISTERS_PER_SUBNET_RANGE
    return canister_id(first), canister_id(first + CANISTERS_PER_SUBNET_RANGE - 1)


@dataclass
class SubnetInfo:
    """One subnet's registry entry: key, ranges and node (one node answers and signs queries)."""

    index: int
    key: RootKey
    ranges: list[CanisterRange]
    node_key: NodeKey
    range_encoding: str = "both"
    subnet_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        if self.range_encoding not in RANGE_ENCODINGS:
            raise ValueError(f"range_encoding must be one of {RANGE_ENCODINGS}, not {self.range_encoding!r}")
        # Subnet ids are self-authenticating ids of the subnet's first threshold key.
        self.subnet_id = self_authenticating(self.key.der)

    @classmethod
    def create(cls, index: int, root_key: RootKey, range_encoding: str = "both") -> SubnetInfo:
        key = root_key if index == 0 else RootKey(f"icsim subnet {index} key".encode())
        node = NodeKey(b"icsim node key" if index == 0 else f"icsim subnet {index} node key".encode())
        return cls(index, key, [subnet_range(index)], node, range_encoding)

    def covers(self, canister: bytes) -> bool:
        return any(low <= canister <= high for low, high in self.ranges)

    def subnet_state(self) -> State:
        """This subnet's entry under `/subnet` (every subnet's state tree holds every subnet's)."""
        state: State = {
            b"public_key": self.key.der,
            b"node": {self.node_key.node_id: {b"public_key": self.node_key.der}},
        }
        if self.range_encoding != "sharded":
            state[b"canister_ranges"] = _ranges_cbor(self.ranges)
        return state

    def range_shards(self) -> State:
        """This subnet's entry under `/canister_ranges`: one shard per range, labelled by its lowest id."""
        if self.range_encoding == "flat":
            return {}
        return {low: _ranges_cbor([(low, high)]) for low, high in self.ranges}


def registry_state(subnets: list[SubnetInfo]) -> State:
    """The `/subnet` and `/canister_ranges` subtrees the state tree of every subnet carries."""
    state: State = {b"subnet": {s.subnet_id: s.subnet_state() for s in subnets}}
    shards = {s.subnet_id: s.range_shards() for s in subnets if s.range_shards()}
    if shards:
        state[b"canister_ranges"] = shards
    return state


def delegation(root_key: RootKey, subnet: SubnetInfo) -> dict[str, Any]:
    """The `delegation` field of the subnet's certificates: made once, like a long-lived mainnet one."""
    sid = subnet.subnet_id
    state: State = {b"time": leb128(time.time_ns()), **registry_state([subnet])}
    paths = [[b"subnet", sid, b"public_key"], [b"subnet", sid, b"canister_ranges"], [b"canister_ranges", sid]]
    return {"subnet_id": sid, "certificate": root_key.certificate(state, [[b"time"], *paths])}


def _ranges_cbor(ranges: list[CanisterRange]) -> bytes:
    return cbor2.dumps([[low, high] for low, high in ranges])
