"""From a Fleet as written to canisters to work on: each member's network, signer, canister id and subnet.

Members that sign as the same identity on the same network share one IcClient (it is thread-safe and
pools its connections), so a fleet of 30 canisters opens a handful of clients, not 30.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PrepError, UsageError
from pipeline.fleet.spec import Fleet, FleetMember
from pipeline.ic.client import IcClient
from pipeline.ic.identity import IcIdentity, load_identity
from pipeline.ic.network import Network, resolve_canister, resolve_network

CONNECTIONS_PER_CANISTER = 16  # a canister's window of chunk calls plus its read-back queries
MAX_CONNECTIONS = 256


@dataclass(frozen=True)
class Signer:
    """Who signs when a member names nobody: the command line's --pem / --identity / --anonymous."""

    pem: Path | None = None
    identity: str | None = None
    anonymous: bool = False
    default_anonymous: bool = False  # a read-only command: nobody named or configured signs anonymously


@dataclass(frozen=True)
class CommandLine:
    """What the command line says for members whose fleet entry leaves it open."""

    network: str
    url: str | None
    signer: Signer


@dataclass(frozen=True)
class FleetTarget:
    """One canister to work on. `subnet` is the certified subnet principal (or, when the certificate does
    not show it, a label naming the network: those canisters are treated as one subnet)."""

    member: FleetMember
    canister_id: str
    client: IcClient
    subnet: str

    @property
    def name(self) -> str:
        """The canister as the user wrote it (a name or an id)."""
        return self.member.canister


@dataclass(frozen=True)
class Unreachable:
    """A member whose subnet could not be learnt: it fails alone, the others go on."""

    member: FleetMember
    canister_id: str
    reason: str


class Clients:
    """One IcClient per (network URL, signer), closed together."""

    def __init__(self, connections: int) -> None:
        self._connections = connections
        self._clients: dict[tuple[str, str], IcClient] = {}
        self._identities: dict[tuple[str | None, str | None, bool, bool], IcIdentity] = {}

    def for_member(self, member: FleetMember, line: CommandLine) -> IcClient:
        network = _network_of(member, line)
        identity = self._identity_of(member, line.signer)
        key = (network.url, identity.principal)
        if key not in self._clients:
            self._clients[key] = IcClient(network, identity, max_connections=self._connections)
        return self._clients[key]

    def _identity_of(self, member: FleetMember, signer: Signer) -> IcIdentity:
        if member.pem is not None or member.identity is not None:
            key = (str(member.pem) if member.pem else None, member.identity, False, False)
        else:
            pem = str(signer.pem) if signer.pem else None
            key = (pem, signer.identity, signer.anonymous, signer.default_anonymous)
        if key not in self._identities:
            pem, identity, anonymous, default_anonymous = key
            self._identities[key] = load_identity(
                pem=pem, identity=identity, anonymous=anonymous, default_anonymous=default_anonymous
            )
        return self._identities[key]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def clients_for(fleet: Fleet) -> Clients:
    return Clients(min(MAX_CONNECTIONS, CONNECTIONS_PER_CANISTER * len(fleet.members) + 16))


def resolve_fleet(
    fleet: Fleet, line: CommandLine, clients: Clients, only: Sequence[str] = ()
) -> tuple[list[FleetTarget], list[Unreachable]]:
    """Every member's client and canister id (bad names and identities are usage errors, before any
    call), then the subnets, learnt concurrently; `only` keeps the members named (by name or id)."""
    resolved = [(m, clients.for_member(m, line)) for m in fleet.members]
    named = [(m, c, resolve_canister(m.canister, c.network)) for m, c in resolved]
    named = _only(named, only, fleet)
    with ThreadPoolExecutor(max_workers=min(16, len(named)), thread_name_prefix="subnet") as pool:
        subnets = list(pool.map(lambda item: _subnet(item[1], item[2]), named))
    targets, unreachable = [], []
    for (member, client, canister_id), (subnet, problem) in zip(named, subnets, strict=True):
        if problem is not None:
            unreachable.append(Unreachable(member, canister_id, problem))
        else:
            targets.append(FleetTarget(member, canister_id, client, subnet))
    return targets, unreachable


def _only(
    named: list[tuple[FleetMember, IcClient, str]], only: Sequence[str], fleet: Fleet
) -> list[tuple[FleetMember, IcClient, str]]:
    if not only:
        return named
    where = str(fleet.path) if fleet.path else "the --canister list"
    known = {m.canister for m, _, _ in named} | {cid for _, _, cid in named}
    unknown = [name for name in only if name not in known]
    if unknown:
        raise UsageError(
            f"--only {unknown[0]}: no such canister in {where}",
            hint="--only takes a canister's name or id as the fleet file lists it",
        )
    return [item for item in named if item[0].canister in only or item[2] in only]


def _subnet(client: IcClient, canister_id: str) -> tuple[str, str | None]:
    """(subnet, None), or ("", why it could not be learnt)."""
    try:
        subnet = client.subnet_of(canister_id)
    except PrepError as err:
        return "", f"could not learn its subnet: {err.message}"
    return subnet or f"the subnet at {client.network.url}", None


def _network_of(member: FleetMember, line: CommandLine) -> Network:
    if member.network is None or member.network == line.network:
        return resolve_network(line.network, line.url)
    return resolve_network(member.network)
