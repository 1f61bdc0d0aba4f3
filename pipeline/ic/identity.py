"""Who signs: dfx identities, PEM files, or the anonymous principal. Secrets never reach output."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from icp_identity import Identity

from pipeline.errors import PrepError, UsageError

PEM_ENV = "PREP_PEM"
_EXPORT_HINT = (
    "export a plaintext PEM with `dfx identity export {name} > identity.pem`, then pass --pem identity.pem"
)


@dataclass(frozen=True)
class IcIdentity:
    """A signer and what it is. `signer` is icp-py-core's Identity (its repr prints the key: kept out)."""

    principal: str
    key_type: str  # "ed25519" | "secp256k1" | "p256" | "anonymous"
    source: str  # e.g. "PEM file /x/id.pem", "dfx identity 'default'", "anonymous"
    signer: Identity = field(repr=False, compare=False)
    _ed25519: Ed25519PrivateKey | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Ed25519 signatures are deterministic: OpenSSL's equal icp-py-core's pure-Python ones, ~12x faster.
        if self.key_type == "ed25519":
            key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(self.signer.privkey))
            object.__setattr__(self, "_ed25519", key)

    @property
    def is_anonymous(self) -> bool:
        return self.key_type == "anonymous"

    def sign(self, message: bytes) -> tuple[bytes, bytes]:
        """(DER public key, signature) over `message`, as the IC expects for this key type."""
        if self._ed25519 is not None:
            return self.signer.der_pubkey, self._ed25519.sign(message)
        public_key, signature = self.signer.sign(message)
        return public_key, signature


def anonymous_identity() -> IcIdentity:
    return IcIdentity(
        principal="2vxsx-fae", key_type="anonymous", source="anonymous", signer=Identity(anonymous=True)
    )


def load_identity(
    pem: Path | str | None = None,
    identity: str | None = None,
    anonymous: bool = False,
    *,
    default_anonymous: bool = False,
) -> IcIdentity:
    """The identity the user chose: --anonymous, --pem, --identity, $PREP_PEM, else dfx's default; with
    `default_anonymous`, none named or configured is anonymous (reading public state needs no signature)."""
    if default_anonymous and not (pem or identity or anonymous):
        try:
            return load_identity()
        except PrepError:
            return anonymous_identity()
    chosen = [
        name
        for name, value in (("--pem", pem), ("--identity", identity), ("--anonymous", anonymous))
        if value
    ]
    if len(chosen) > 1:
        raise UsageError(f"choose one of {', '.join(chosen)}", hint="they all say who signs the calls")
    if anonymous:
        return anonymous_identity()
    if pem:
        return identity_from_pem_file(Path(pem).expanduser())
    if identity:
        return dfx_identity(identity)
    if os.environ.get(PEM_ENV):
        return identity_from_pem_file(Path(os.environ[PEM_ENV]).expanduser(), origin=f"${PEM_ENV}")
    return dfx_identity(_dfx_default_identity_name())


def identity_from_pem_file(
    path: Path, *, origin: str = "PEM file", dfx_name: str | None = None
) -> IcIdentity:
    pem_hint = "pass --pem PATH to an identity PEM file (dfx identity export NAME > id.pem writes one)"
    if path.is_dir():
        raise UsageError(f"{origin} {path} is a folder, not a PEM file", hint=pem_hint)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise UsageError(f"{origin} {path} does not exist", hint=pem_hint) from None
    except UnicodeDecodeError:
        raise UsageError(f"{origin} {path} is not a PEM file (it is not text)", hint=pem_hint) from None
    except OSError as err:
        raise PrepError(f"cannot read {origin} {path}: {err.strerror or type(err).__name__}") from None
    return identity_from_pem_text(text, f"{origin} {path}", dfx_name=dfx_name)


def identity_from_pem_text(text: str, source: str, *, dfx_name: str | None = None) -> IcIdentity:
    if "ENCRYPTED" in text:
        raise UsageError(f"{source} is encrypted", hint=_EXPORT_HINT.format(name=dfx_name or "NAME"))
    if "PRIVATE KEY" not in text:
        raise UsageError(f"{source} holds no private key", hint="expected a PEM written by dfx or openssl")
    try:
        signer = Identity.from_pem(text)
    except Exception:  # ecdsa raises assorted errors; their text is not useful and must not echo key bytes
        raise UsageError(
            f"{source} is not an Ed25519, secp256k1 or P-256 private key PEM",
            hint="dfx writes these; other key types cannot sign IC calls",
        ) from None
    return IcIdentity(
        principal=signer.sender().to_str(), key_type=signer.key_type, source=source, signer=signer
    )


def dfx_identity_root() -> Path:
    """dfx keeps identities in $DFX_CONFIG_ROOT/.config/dfx/identity ($DFX_CONFIG_ROOT defaults to $HOME)."""
    base = Path(os.environ.get("DFX_CONFIG_ROOT") or Path.home())
    return base / ".config" / "dfx" / "identity"


def dfx_identity(name: str) -> IcIdentity:
    if name == "anonymous":
        return anonymous_identity()
    folder = dfx_identity_root() / name
    pem = folder / "identity.pem"
    if pem.is_file():
        return identity_from_pem_file(pem, origin=f"dfx identity '{name}'", dfx_name=name)
    if (folder / "identity.pem.encrypted").is_file():
        raise PrepError(f"dfx identity '{name}' is encrypted ({folder})", hint=_EXPORT_HINT.format(name=name))
    if (folder / "identity.json").is_file():
        raise PrepError(
            f"dfx identity '{name}' keeps its key in the system keyring ({folder / 'identity.json'})",
            hint=_EXPORT_HINT.format(name=name),
        )
    known = (
        sorted(p.name for p in dfx_identity_root().iterdir() if p.is_dir())
        if dfx_identity_root().is_dir()
        else []
    )
    raise PrepError(
        f"no dfx identity '{name}' in {dfx_identity_root()}"
        + (f" (found: {', '.join(known)})" if known else " (no identities there)"),
        hint="pass --identity NAME, --pem PATH or --anonymous; DFX_CONFIG_ROOT moves the dfx store",
    )


def _dfx_default_identity_name() -> str:
    settings = dfx_identity_root().parent / "identity.json"
    if not settings.is_file():
        if (dfx_identity_root() / "default").is_dir():
            return "default"
        raise PrepError(
            f"no identity given: --pem, --identity and ${PEM_ENV} are unset, and dfx's default identity is "
            f"not in {dfx_identity_root()}",
            hint=f"pass --pem PATH, --identity NAME or --anonymous (or set ${PEM_ENV}); "
            "$DFX_CONFIG_ROOT moves the dfx store",
        )
    try:
        return str(json.loads(settings.read_text())["default"])
    except (ValueError, KeyError, OSError):
        return "default"
