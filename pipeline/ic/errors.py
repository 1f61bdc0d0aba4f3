"""Failures talking to the Internet Computer, split by what a caller should do about them."""

from __future__ import annotations

from pipeline.errors import PrepError


class IcError(PrepError):
    """Any failure talking to a replica or boundary node."""


class TransientIcError(IcError):
    """Worth retrying with the same signed envelope: transport errors, timeouts, 5xx, 429."""


class PermanentIcError(IcError):
    """Retrying cannot help: bad request, unknown canister or method, not authorised, expired."""


class CallRejected(PermanentIcError):
    """The replica or the canister rejected the message; carries the replica's own words."""

    def __init__(
        self,
        message: str,
        *,
        reject_code: int,
        reject_message: str,
        error_code: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.reject_code = reject_code
        self.reject_message = reject_message
        self.error_code = error_code
        super().__init__(message, hint=hint)


class CertificateError(PermanentIcError):
    """A certificate failed verification (signature, delegation, root key or freshness)."""
