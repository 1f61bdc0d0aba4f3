"""The subnets of one emulated IC and how requests find theirs (by effective canister id or subnet id)."""

from __future__ import annotations

from tests.icsim.certify import RootKey
from tests.icsim.faults import Faults
from tests.icsim.replica import Replica


class Topology:
    def __init__(self, root_key: RootKey, replicas: list[Replica], faults: Faults) -> None:
        self.root_key = root_key
        self.replicas = replicas
        self.faults = faults

    @property
    def root(self) -> Replica:
        """Subnet 0, which signs with the root key (like the NNS)."""
        return self.replicas[0]

    def for_canister(self, canister_id: bytes) -> Replica:
        """The subnet whose ranges hold the canister; an id in no range goes to subnet 0 (which says
        no such canister), as a boundary node would route it somewhere."""
        for replica in self.replicas:
            if replica.subnet.covers(canister_id):
                return replica
        return self.root

    def for_subnet(self, subnet_id: bytes) -> Replica | None:
        for replica in self.replicas:
            if replica.subnet_id == subnet_id:
                return replica
        return None

    def start(self) -> None:
        for replica in self.replicas:
            replica.start()

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()

    def drop_in_flight(self) -> int:
        return sum(replica.drop_in_flight() for replica in self.replicas)
