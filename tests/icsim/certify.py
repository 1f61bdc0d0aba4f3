"""BLS12-381 min-sig certification of state trees with the emulator's own root key."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import cbor2
import pyblst

from tests.icsim.hashtree import State, build, reveal

ROOT_KEY_DER_PREFIX = bytes.fromhex(
    "308182301d060d2b0601040182dc7c0503010201060c2b0601040182dc7c05030201036100"
)
STATE_ROOT_DOMAIN = b"\x0dic-state-root"
BLS_DST = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_"
G2_GENERATOR = bytes.fromhex(
    "93e02b6052719f607dacd3a088274f65596bd0d09920b61ab5da61bbdc7f5049334cf11213945d57e5ac7d055d042b7e"
    "024aa2b2f08f0a91260805272dc51051c6e47ad4fa403b02b4510b647ae3d1770bac0326a805bbefd48056c8c121bdb8"
)
CURVE_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
SELF_DESCRIBE_TAG = 55799


def tagged(value: object) -> bytes:
    """CBOR with the self-describe tag every IC HTTP body carries."""
    return cbor2.dumps(cbor2.CBORTag(SELF_DESCRIBE_TAG, value))


class RootKey:
    """A root secret key; deterministic from its seed so a restarted emulator keeps its public key."""

    def __init__(self, seed: bytes = b"icsim root key") -> None:
        self._secret = int.from_bytes(hashlib.sha512(seed).digest(), "big") % CURVE_ORDER or 1
        public = pyblst.BlstP2Element().uncompress(G2_GENERATOR).scalar_mul(self._secret)
        self.public_key = public.compress()
        self.der = ROOT_KEY_DER_PREFIX + self.public_key

    def sign(self, message: bytes) -> bytes:
        point = pyblst.BlstP1Element().hash_to_group(message, BLS_DST)
        return point.scalar_mul(self._secret).compress()

    def certificate(
        self, state: State, paths: Sequence[Sequence[bytes]], delegation: dict[str, bytes] | None = None
    ) -> bytes:
        """CBOR certificate revealing `paths` (and nothing else) of `state`, signed over its root hash;
        with `delegation` when this key is a subnet's that the root key vouches for."""
        tree = reveal(build(state), paths)
        signature = self.sign(STATE_ROOT_DOMAIN + tree.digest())
        body: dict[str, object] = {"tree": tree.to_cbor(), "signature": signature}
        if delegation is not None:
            body["delegation"] = delegation
        return tagged(body)


def verify(der_public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Verify a min-sig BLS signature with pyblst (used by the emulator's own tests)."""
    if not der_public_key.startswith(ROOT_KEY_DER_PREFIX):
        return False
    public = pyblst.BlstP2Element().uncompress(der_public_key[len(ROOT_KEY_DER_PREFIX) :])
    sig = pyblst.BlstP1Element().uncompress(signature)
    hashed = pyblst.BlstP1Element().hash_to_group(message, BLS_DST)
    generator = pyblst.BlstP2Element().uncompress(G2_GENERATOR)
    return pyblst.final_verify(pyblst.miller_loop(sig, generator), pyblst.miller_loop(hashed, public))
