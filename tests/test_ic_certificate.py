"""Certificate checks with delegations (as mainnet subnets sign), built here with keys made here."""

from __future__ import annotations

import hashlib
import time

import cbor2
import py_arkworks_bls12381 as ark
import pytest
from icp_candid.candid import LEB128

from pipeline.ic import bls
from pipeline.ic.certificate import verify_certificate
from pipeline.ic.errors import CertificateError

DER_PREFIX = bytes.fromhex("308182301d060d2b0601040182dc7c0503010201060c2b0601040182dc7c05030201036100")
SUBNET_ID = bytes(range(29))
CANISTER = (5).to_bytes(8, "big") + b"\x01\x01"
OUTSIDE = (500).to_bytes(8, "big") + b"\x01\x01"
RANGE = ((0).to_bytes(8, "big") + b"\x01\x01", (99).to_bytes(8, "big") + b"\x01\x01")


def _sep(name: str) -> bytes:
    return bytes([len(name)]) + name.encode()


def _tree(node: dict | bytes) -> list:
    """A hash tree from nested {label: subtree-or-leaf} (labels sorted, forks left-leaning)."""
    if isinstance(node, bytes):
        return [3, node]
    subtrees = [[2, label, _tree(child)] for label, child in sorted(node.items())]
    tree = subtrees[0]
    for right in subtrees[1:]:
        tree = [1, tree, right]
    return tree


def _digest(tree: list) -> bytes:
    tag = tree[0]
    if tag == 1:
        return hashlib.sha256(_sep("ic-hashtree-fork") + _digest(tree[1]) + _digest(tree[2])).digest()
    if tag == 2:
        return hashlib.sha256(_sep("ic-hashtree-labeled") + tree[1] + _digest(tree[2])).digest()
    return hashlib.sha256(_sep("ic-hashtree-leaf") + tree[1]).digest()


def _key(seed: int) -> tuple[ark.Scalar, bytes]:
    secret = ark.Scalar(seed)
    return secret, DER_PREFIX + (ark.G2Point() * secret).to_compressed_bytes()


def _certificate(content: dict, secret: ark.Scalar, delegation: dict | None = None) -> bytes:
    tree = _tree({**content, b"time": LEB128.encode_u(time.time_ns())})
    message = b"\x0dic-state-root" + _digest(tree)
    signature = (ark.G1Point.hash_to_curve(message, bls.IC_BLS_DST) * secret).to_compressed_bytes()
    body = {"tree": tree, "signature": signature}
    if delegation is not None:
        body["delegation"] = delegation
    return cbor2.dumps(body)


ROOT_SECRET, ROOT_DER = _key(1111)
SUBNET_SECRET, SUBNET_DER = _key(2222)


def _delegated(
    parent_secret: ark.Scalar = ROOT_SECRET, child_secret: ark.Scalar = SUBNET_SECRET, *, flat: bool = False
) -> bytes:
    ranges = cbor2.dumps([list(RANGE)])
    if flat:  # /subnet/<id>/canister_ranges
        parent_content: dict = {
            b"subnet": {SUBNET_ID: {b"public_key": SUBNET_DER, b"canister_ranges": ranges}}
        }
    else:  # /canister_ranges/<id>/<shard>
        parent_content = {
            b"subnet": {SUBNET_ID: {b"public_key": SUBNET_DER}},
            b"canister_ranges": {SUBNET_ID: {RANGE[0]: ranges}},
        }
    parent = _certificate(parent_content, parent_secret)
    content = {b"canister": {CANISTER: {b"module_hash": b"\xab" * 32}}}
    return _certificate(content, child_secret, {"subnet_id": SUBNET_ID, "certificate": parent})


@pytest.mark.parametrize("flat", [False, True], ids=["sharded-ranges", "flat-ranges"])
def test_delegated_certificate_verifies_and_reads(flat: bool) -> None:
    certificate = verify_certificate(_delegated(flat=flat), CANISTER, ROOT_DER)
    assert certificate.lookup([b"canister", CANISTER, b"module_hash"]) == b"\xab" * 32


@pytest.mark.parametrize("flat", [False, True], ids=["sharded-ranges", "flat-ranges"])
def test_canister_outside_the_subnet_ranges_is_refused(flat: bool) -> None:
    with pytest.raises(CertificateError, match="does not cover"):
        verify_certificate(_delegated(flat=flat), OUTSIDE, ROOT_DER)


def test_delegation_not_signed_by_the_root_key_is_refused() -> None:
    with pytest.raises(CertificateError, match="delegation certificate signature"):
        verify_certificate(_delegated(parent_secret=ark.Scalar(3333)), CANISTER, ROOT_DER)


def test_certificate_not_signed_by_the_subnet_key_is_refused() -> None:
    with pytest.raises(CertificateError, match="^certificate signature"):
        verify_certificate(_delegated(child_secret=ROOT_SECRET), CANISTER, ROOT_DER)


def test_plain_certificate_and_garbage() -> None:
    plain = _certificate({b"canister": {CANISTER: {b"module_hash": b"\x01" * 32}}}, ROOT_SECRET)
    assert verify_certificate(plain, CANISTER, ROOT_DER).lookup([b"canister", CANISTER, b"module_hash"])
    with pytest.raises(CertificateError, match="signature"):
        verify_certificate(plain, CANISTER, SUBNET_DER)
    with pytest.raises(CertificateError, match="malformed"):
        verify_certificate(b"\xa0", CANISTER, ROOT_DER)
