"""BLS12-381 signature checks for IC certificates, over `pyblst` (PyPI).

The IC signs state roots with BLS "min-sig": signatures in G1 (48 bytes compressed), public keys in
G2 (96 bytes). icp-py-core expects the `blst` SWIG binding, which is not on PyPI; `blst_module()`
builds the small part of that API it calls, so icp-py-core's own code paths verify too.
"""

from __future__ import annotations

import sys
import types
from functools import lru_cache

import pyblst

IC_BLS_DST = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_"
_G2_GENERATOR = bytes.fromhex(
    "93e02b6052719f607dacd3a088274f65596bd0d09920b61ab5da61bbdc7f5049334cf11213945d57e5ac7d055d042b7e"
    "024aa2b2f08f0a91260805272dc51051c6e47ad4fa403b02b4510b647ae3d1770bac0326a805bbefd48056c8c121bdb8"
)
_COMPRESSED_INFINITY_FLAG = 0x40


def verify_signature(signature: bytes, message: bytes, public_key: bytes, dst: bytes = IC_BLS_DST) -> bool:
    """True when `signature` (G1, compressed) signs `message` under `public_key` (G2, compressed)."""
    return _verify(bytes(signature), bytes(message), bytes(public_key), bytes(dst))


# A pure function of its inputs, ~2.3 ms each: replies certified at the same height carry the same
# root hash and signature (a window of concurrent calls, polls of one request), so repeats are free.
@lru_cache(maxsize=256)
def _verify(signature: bytes, message: bytes, public_key: bytes, dst: bytes) -> bool:
    if len(signature) != 48 or len(public_key) != 96:
        return False
    # The point at infinity is a valid encoding but never a valid key or signature.
    if signature[0] & _COMPRESSED_INFINITY_FLAG or public_key[0] & _COMPRESSED_INFINITY_FLAG:
        return False
    try:
        sig = pyblst.BlstP1Element.uncompress(signature)
        key = _g2_point(public_key)
        hashed = pyblst.BlstP1Element.hash_to_group(message, dst)
        generator = _g2_point(_G2_GENERATOR)
        return bool(pyblst.final_verify(pyblst.miller_loop(sig, generator), pyblst.miller_loop(hashed, key)))
    except Exception:  # pyblst raises plain exceptions for bad encodings or points off the subgroup
        return False


@lru_cache(maxsize=64)
def _g2_point(compressed: bytes) -> pyblst.BlstP2Element:
    """Decoded (and subgroup-checked) G2 points; the same few root and subnet keys sign everything."""
    return pyblst.BlstP2Element.uncompress(compressed)


class _P1Affine:
    def __init__(self, compressed: bytes) -> None:
        self.compressed = bytes(compressed)

    def core_verify(
        self, public_key: _P2Affine, hash_or_encode: bool, message: bytes, dst: bytes, aug
    ) -> int:
        if not hash_or_encode or aug:
            return _BLST_BAD_ENCODING
        ok = verify_signature(self.compressed, message, public_key.compressed, dst)
        return _BLST_SUCCESS if ok else _BLST_VERIFY_FAIL


class _P2Affine:
    def __init__(self, compressed: bytes) -> None:
        self.compressed = bytes(compressed)


class _Pairing:
    """Only reached by icp-py-core when `core_verify` fails; it must then fail too."""

    def __init__(self, hash_or_encode: bool, dst: bytes) -> None:
        self._ok = False

    def aggregate(self, public_key: _P2Affine, signature: _P1Affine, message: bytes, aug) -> None:
        self._ok = False

    def finalverify(self) -> bool:
        return self._ok


_BLST_SUCCESS = 0
_BLST_BAD_ENCODING = 1
_BLST_VERIFY_FAIL = 5


def blst_module() -> types.ModuleType:
    """A module with the `blst` names icp-py-core's verifier uses, backed by `verify_signature`."""
    module = types.ModuleType("blst", "Minimal blst-compatible BLS verification over pyblst (prep).")
    module.P1_Affine = _P1Affine
    module.P2_Affine = _P2Affine
    module.Pairing = _Pairing
    module.BLST_SUCCESS = _BLST_SUCCESS
    return module


def provide_blst_for_icp_py_core() -> None:
    """Make `import blst` inside icp-py-core work when the SWIG binding is absent (idempotent)."""
    if "blst" in sys.modules:
        return
    try:
        import blst  # noqa: F401  # the real binding wins when someone built it
    except ModuleNotFoundError:
        sys.modules["blst"] = blst_module()
