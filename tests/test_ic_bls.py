"""BLS verification over pyblst, cross-checked against py_arkworks_bls12381 with keys made here."""

from __future__ import annotations

import hashlib

import py_arkworks_bls12381 as ark
import pytest

from pipeline.ic import bls

MESSAGE = b"\x0dic-state-root" + hashlib.sha256(b"tree").digest()


def _key_pair(seed: int) -> tuple[ark.Scalar, bytes]:
    secret = ark.Scalar(seed)
    return secret, (ark.G2Point() * secret).to_compressed_bytes()


def _sign(secret: ark.Scalar, message: bytes) -> bytes:
    return (ark.G1Point.hash_to_curve(message, bls.IC_BLS_DST) * secret).to_compressed_bytes()


def _ark_verify(signature: bytes, message: bytes, public_key: bytes) -> bool:
    sig = ark.G1Point.from_compressed_bytes(signature)
    key = ark.G2Point.from_compressed_bytes(public_key)
    hashed = ark.G1Point.hash_to_curve(message, bls.IC_BLS_DST)
    return ark.GT.pairing(sig, ark.G2Point()) == ark.GT.pairing(hashed, key)


def test_valid_signature_verifies_in_both_libraries() -> None:
    secret, public_key = _key_pair(0x1234567890ABCDEF)
    signature = _sign(secret, MESSAGE)
    assert _ark_verify(signature, MESSAGE, public_key)
    assert bls.verify_signature(signature, MESSAGE, public_key)


@pytest.mark.parametrize("what", ["message", "key", "signature", "dst"])
def test_wrong_inputs_fail_in_both_libraries(what: str) -> None:
    secret, public_key = _key_pair(987654321)
    signature = _sign(secret, MESSAGE)
    message, dst = MESSAGE, bls.IC_BLS_DST
    if what == "message":
        message = MESSAGE + b"x"
    elif what == "key":
        public_key = _key_pair(987654322)[1]
    elif what == "signature":
        signature = _sign(ark.Scalar(5), MESSAGE)
    else:
        dst = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_"
    assert not bls.verify_signature(signature, message, public_key, dst)
    if what != "dst":
        assert not _ark_verify(signature, message, public_key)


def test_malformed_and_infinity_encodings_are_rejected() -> None:
    secret, public_key = _key_pair(42)
    signature = _sign(secret, MESSAGE)
    infinity_g1 = bytes([0xC0]) + bytes(47)
    infinity_g2 = bytes([0xC0]) + bytes(95)
    assert not bls.verify_signature(signature[:47], MESSAGE, public_key)
    assert not bls.verify_signature(bytes(48), MESSAGE, public_key)
    assert not bls.verify_signature(infinity_g1, MESSAGE, infinity_g2)
    assert not bls.verify_signature(signature, MESSAGE, infinity_g2)


def test_blst_shim_drives_icp_py_core_verifier() -> None:
    from icp_certificate import certificate

    bls.provide_blst_for_icp_py_core()
    secret, public_key = _key_pair(777)
    signature = _sign(secret, MESSAGE)
    assert certificate.verify_bls_signature_blst(signature, MESSAGE, public_key) is True
    assert certificate.verify_bls_signature_blst(signature, MESSAGE + b"!", public_key) is False


def _g1_point_outside_subgroup() -> bytes:
    field_prime = int(
        "1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab", 16
    )
    x = 5
    while True:
        rhs = (x**3 + 4) % field_prime
        y = pow(rhs, (field_prime + 1) // 4, field_prime)
        if y * y % field_prime == rhs:
            break
        x += 1
    flags = 0x80 | (0x20 if y > (field_prime - 1) // 2 else 0)
    encoded = (x | (flags << 376)).to_bytes(48, "big")
    assert not ark.G1Point.from_compressed_bytes_unchecked(encoded).is_in_subgroup()
    return encoded


def test_signature_outside_the_subgroup_is_rejected() -> None:
    _, public_key = _key_pair(99)
    assert not bls.verify_signature(_g1_point_outside_subgroup(), MESSAGE, public_key)


def test_repeated_checks_are_cached_and_changes_still_fail() -> None:
    secret, public_key = _key_pair(0x5EED)
    signature = _sign(secret, MESSAGE)
    assert bls.verify_signature(signature, MESSAGE, public_key)
    hits = bls._verify.cache_info().hits
    assert bls.verify_signature(bytearray(signature), MESSAGE, public_key)
    assert bls._verify.cache_info().hits == hits + 1
    assert not bls.verify_signature(signature, MESSAGE + b"!", public_key)
    assert not bls.verify_signature(_sign(secret, MESSAGE + b"!"), MESSAGE, public_key)
