"""Fixtures for the ic area: identity PEM files as dfx writes them, and a dfx identity store."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from icp_principal import Principal

SECP256K1_PARAMETERS = "-----BEGIN EC PARAMETERS-----\nBgUrgQQACg==\n-----END EC PARAMETERS-----\n"


@dataclass(frozen=True)
class PemKey:
    path: Path
    principal: str  # computed here from the SPKI DER, independently of the code under test


def _principal_of(public_key) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return Principal(hashlib.sha224(der).digest() + b"\x02").to_str()


def write_ed25519_pem(path: Path, *, version: int = 1) -> PemKey:
    key = ed25519.Ed25519PrivateKey.generate()
    if version == 1:
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    else:  # PKCS#8 v2 (OneAsymmetricKey with the public key), as dfx writes Ed25519 identities
        raw = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        der = bytes.fromhex("3053020101300506032b657004220420") + raw + bytes.fromhex("a123032100") + public
        pem = (
            "-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(der).decode() + "-----END PRIVATE KEY-----\n"
        )
    path.write_text(pem)
    return PemKey(path, _principal_of(key.public_key()))


def write_secp256k1_pem(path: Path, *, with_parameters: bool = True) -> PemKey:
    key = ec.generate_private_key(ec.SECP256K1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    path.write_text((SECP256K1_PARAMETERS if with_parameters else "") + pem)
    return PemKey(path, _principal_of(key.public_key()))


def write_encrypted_pem(path: Path) -> Path:
    key = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return path


@pytest.fixture
def ed25519_pem(tmp_path: Path) -> PemKey:
    return write_ed25519_pem(tmp_path / "ed25519.pem", version=2)


@pytest.fixture
def secp256k1_pem(tmp_path: Path) -> PemKey:
    return write_secp256k1_pem(tmp_path / "secp256k1.pem")


@pytest.fixture
def dfx_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty dfx config root (DFX_CONFIG_ROOT) with no PREP_PEM set; returns the identity folder."""
    root = tmp_path / "dfxroot"
    identities = root / ".config" / "dfx" / "identity"
    identities.mkdir(parents=True)
    monkeypatch.setenv("DFX_CONFIG_ROOT", str(root))
    monkeypatch.delenv("PREP_PEM", raising=False)
    return identities


@dataclass
class IcWorld:
    """An icsim whose llama_cpp canister is controlled by an Ed25519 and a secp256k1 identity."""

    sim: object  # tests.icsim.IcSim
    ed25519: PemKey
    secp256k1: PemKey
    canister_id: str


@pytest.fixture
def ic_world(tmp_path: Path):
    from tests.icsim import IcSim

    ed_key = write_ed25519_pem(tmp_path / "controller-ed25519.pem", version=2)
    secp_key = write_secp256k1_pem(tmp_path / "controller-secp256k1.pem")
    with IcSim(controllers=[ed_key.principal, secp_key.principal]) as sim:
        yield IcWorld(sim, ed_key, secp_key, sim.canister_ids["llama_cpp"])
