"""Identities: dfx PEM formats, the dfx store, and the errors for keys we cannot use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import PrepError, UsageError
from pipeline.ic.identity import load_identity
from tests.fixtures_ic import write_ed25519_pem, write_encrypted_pem, write_secp256k1_pem


@pytest.mark.parametrize("version", [1, 2])
def test_ed25519_pkcs8_pems_load(tmp_path: Path, version: int) -> None:
    key = write_ed25519_pem(tmp_path / "id.pem", version=version)
    identity = load_identity(pem=key.path)
    assert identity.principal == key.principal
    assert identity.key_type == "ed25519"


@pytest.mark.parametrize("with_parameters", [True, False])
def test_secp256k1_sec1_pems_load(tmp_path: Path, with_parameters: bool) -> None:
    key = write_secp256k1_pem(tmp_path / "id.pem", with_parameters=with_parameters)
    identity = load_identity(pem=str(key.path))
    assert identity.principal == key.principal
    assert identity.key_type == "secp256k1"


def test_anonymous() -> None:
    identity = load_identity(anonymous=True)
    assert identity.principal == "2vxsx-fae"
    assert identity.is_anonymous


def test_repr_never_shows_the_key(ed25519_pem) -> None:
    identity = load_identity(pem=ed25519_pem.path)
    assert identity.signer.privkey not in repr(identity)
    assert identity.signer.privkey not in str(identity)


def test_dfx_store_by_name_and_default(dfx_store: Path) -> None:
    (dfx_store / "alice").mkdir()
    key = write_ed25519_pem(dfx_store / "alice" / "identity.pem", version=2)
    assert load_identity(identity="alice").principal == key.principal
    (dfx_store.parent / "identity.json").write_text(json.dumps({"default": "alice"}))
    assert load_identity().principal == key.principal


def test_prep_pem_env_wins_over_dfx_default(dfx_store: Path, tmp_path: Path, monkeypatch) -> None:
    key = write_secp256k1_pem(tmp_path / "env.pem")
    monkeypatch.setenv("PREP_PEM", str(key.path))
    assert load_identity().principal == key.principal


def test_unknown_dfx_identity_lists_known_ones(dfx_store: Path) -> None:
    (dfx_store / "alice").mkdir()
    write_ed25519_pem(dfx_store / "alice" / "identity.pem")
    with pytest.raises(PrepError, match=r"no dfx identity 'bob'.*found: alice"):
        load_identity(identity="bob")


def test_encrypted_dfx_identity_explains_export(dfx_store: Path) -> None:
    (dfx_store / "vault").mkdir()
    (dfx_store / "vault" / "identity.pem.encrypted").write_bytes(b"\x00" * 64)
    with pytest.raises(PrepError, match="encrypted") as err:
        load_identity(identity="vault")
    assert "dfx identity export vault" in str(err.value)


def test_keyring_dfx_identity_explains_export(dfx_store: Path) -> None:
    (dfx_store / "ring").mkdir()
    (dfx_store / "ring" / "identity.json").write_text(json.dumps({"keyring_identity_suffix": "ring"}))
    with pytest.raises(PrepError, match="keyring") as err:
        load_identity(identity="ring")
    assert "dfx identity export ring" in str(err.value)


def test_encrypted_pem_file_explains_export(tmp_path: Path) -> None:
    path = write_encrypted_pem(tmp_path / "enc.pem")
    with pytest.raises(PrepError, match=r"enc\.pem is encrypted") as err:
        load_identity(pem=path)
    assert "dfx identity export" in str(err.value)


def test_missing_and_garbage_pem_files(tmp_path: Path) -> None:
    with pytest.raises(PrepError, match="does not exist"):
        load_identity(pem=tmp_path / "nope.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(PrepError, match="not an Ed25519, secp256k1 or P-256 private key"):
        load_identity(pem=garbage)


def test_no_identity_at_all_says_what_to_pass(dfx_store: Path) -> None:
    with pytest.raises(PrepError, match="no identity given") as err:
        load_identity()
    assert "--pem" in str(err.value) and "--anonymous" in str(err.value)


def test_conflicting_choices_are_a_usage_error(ed25519_pem) -> None:
    with pytest.raises(UsageError):
        load_identity(pem=ed25519_pem.path, anonymous=True)


def test_dfx_default_identity_without_settings_file(dfx_store: Path) -> None:
    (dfx_store / "default").mkdir()
    key = write_secp256k1_pem(dfx_store / "default" / "identity.pem", with_parameters=True)
    assert load_identity().principal == key.principal


def test_fast_ed25519_signatures_equal_icp_py_core_ones(ed25519_pem) -> None:
    identity = load_identity(pem=ed25519_pem.path)
    message = b"\x0aic-request" + bytes(range(32))
    assert identity.sign(message) == identity.signer.sign(message)


def test_secp256k1_signatures_verify(secp256k1_pem) -> None:
    identity = load_identity(pem=secp256k1_pem.path)
    public_key, signature = identity.sign(b"message")
    assert public_key == identity.signer.der_pubkey and identity.signer.verify(b"message", signature)
