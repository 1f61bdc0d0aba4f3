"""Real mainnet certificates (published by dfinity/agent-rs, with their times) through prep's checks."""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest
from icp_certificate.certificate import IC_ROOT_KEY
from icp_principal import Principal

from pipeline.ic.certificate import certificate_time, parse_certificate, subnet_of, verify_certificate
from pipeline.ic.client import IcClient
from pipeline.ic.errors import CertificateError
from pipeline.ic.identity import anonymous_identity
from pipeline.ic.network import Network
from pipeline.ic.query_signatures import node_keys_from
from pipeline.ic.transport import WireResponse

DATA = Path(__file__).parent / "data" / "agent_rs"
IVG37 = "ivg37-qiaaa-aaaab-aaaga-cai"
CANISTER_224OD = "224od-giaaa-aaaao-ae5vq-cai"
NNS_LEDGER = "ryjl3-tyaaa-aaaaa-aaaba-cai"  # on the NNS subnet, not on the delegated subnets below


def certificate_bytes(name: str) -> bytes:
    return bytes(cbor2.loads((DATA / f"{name}.bin").read_bytes())["certificate"])


def made_at(name: str) -> int:
    return certificate_time(parse_certificate(certificate_bytes(name), name))


def raw(principal: str) -> bytes:
    return Principal.from_str(principal).bytes


@pytest.mark.parametrize("name", ["ivg37_time", "ivg37_delegated_v2"])
def test_delegated_mainnet_certificates_verify_at_their_time(name: str) -> None:
    """Both encodings of the subnet's canister ranges (per shard, and the older flat leaf)."""
    certificate = verify_certificate(certificate_bytes(name), raw(IVG37), IC_ROOT_KEY, now_ns=made_at(name))
    assert Principal(subnet_of(certificate, IC_ROOT_KEY)).to_str().startswith("qxesv-")


@pytest.mark.parametrize("name", ["ivg37_time_pruned_ranges", "ivg37_delegated_v2_pruned_subnet"])
def test_a_delegation_without_its_canister_ranges_is_refused(name: str) -> None:
    with pytest.raises(CertificateError, match="canister ranges"):
        verify_certificate(certificate_bytes(name), raw(IVG37), IC_ROOT_KEY, now_ns=made_at(name))


def test_a_subnet_answering_for_a_canister_it_does_not_host_is_refused() -> None:
    with pytest.raises(CertificateError, match="does not cover this canister"):
        verify_certificate(
            certificate_bytes("ivg37_time"), raw(NNS_LEDGER), IC_ROOT_KEY, now_ns=made_at("ivg37_time")
        )


def test_mainnet_certificate_freshness_and_tampering() -> None:
    data, made = certificate_bytes("ivg37_time"), made_at("ivg37_time")
    with pytest.raises(CertificateError, match="stale"):
        verify_certificate(data, raw(IVG37), IC_ROOT_KEY, now_ns=made + 6 * 60 * 10**9)
    with pytest.raises(CertificateError, match="future"):
        verify_certificate(data, raw(IVG37), IC_ROOT_KEY, now_ns=made - 6 * 60 * 10**9)
    decoded = dict(cbor2.loads(data))
    decoded["signature"] = bytes([decoded["signature"][0] ^ 1]) + decoded["signature"][1:]
    with pytest.raises(CertificateError, match="does not verify"):
        verify_certificate(cbor2.dumps(decoded), raw(IVG37), IC_ROOT_KEY, now_ns=made)
    other_root = IC_ROOT_KEY[:-1] + bytes([IC_ROOT_KEY[-1] ^ 1])
    with pytest.raises(CertificateError):
        verify_certificate(data, raw(IVG37), other_root, now_ns=made)


class ReplayWire:
    """A Wire that answers every read_state with one recorded mainnet body (and counts them)."""

    url = "https://icp-api.io"

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.paths: list[str] = []

    def request(self, method: str, path: str, body: bytes | None, *, timeout: float) -> WireResponse:
        self.paths.append(path)
        return WireResponse(200, "OK", self.body)

    def close(self) -> None:
        pass


def test_node_keys_of_a_mainnet_subnet_through_the_client() -> None:
    """IcClient reads a subnet's node keys from a real mainnet answer (clock set to its time)."""
    body = (DATA / "224od_subnet.bin").read_bytes()
    made = made_at("224od_subnet")
    wire = ReplayWire(body)
    network = Network("ic", "https://icp-api.io", is_mainnet=True)
    with IcClient(network, anonymous_identity(), wire=wire, clock=lambda: made) as client:
        keys = client.node_keys(CANISTER_224OD)
        assert client.node_keys(CANISTER_224OD) is keys  # fetched once, then cached
        assert Principal(keys.subnet_id).to_str().startswith("o3ow2-")
        assert len(keys.keys) >= 13  # an application subnet has 13 nodes or more
        assert all(len(key) == 44 for key in keys.keys.values())  # Ed25519 SubjectPublicKeyInfo
        with pytest.raises(CertificateError, match="does not cover"):
            client.node_keys("rdmx6-jaaaa-aaaaa-aaadq-cai")  # 224od's subnet answering for another canister
    assert wire.paths == [
        f"/api/v3/canister/{CANISTER_224OD}/read_state",
        "/api/v3/canister/rdmx6-jaaaa-aaaaa-aaadq-cai/read_state",
    ]


def test_node_keys_need_the_subnet_in_the_certificate() -> None:
    certificate = parse_certificate(certificate_bytes("ivg37_time"), "certificate")
    from pipeline.ic.errors import QuerySignatureError

    with pytest.raises(QuerySignatureError, match="lists no node keys"):
        node_keys_from(certificate, subnet_of(certificate, IC_ROOT_KEY), where="ivg37")
