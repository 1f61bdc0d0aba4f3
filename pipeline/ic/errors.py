"""Failures talking to the Internet Computer, split by what a caller should do about them."""

from __future__ import annotations

from pipeline.errors import PrepError


class IcError(PrepError):
    """Any failure talking to a replica or boundary node."""


class TransientIcError(IcError):
    """Worth retrying with the same signed envelope: transport errors, timeouts, 5xx, 429."""


class Overloaded(TransientIcError):
    """The replica or a boundary node refused the request for load (HTTP 429 or 503, e.g. a full
    ingress pool): nothing was accepted; send less, later."""


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


class TransportError(TransientIcError):
    """A request did not complete at the HTTP level (refused, reset, timed out); `url` is where it went."""

    def __init__(self, message: str, *, url: str, hint: str | None = None) -> None:
        self.url = url
        super().__init__(message, hint=hint)


class ConnectFailed(TransportError):
    """Nothing answered the connection (refused, unknown host): the replica is down or the URL is wrong."""


class TimedOut(TransportError):
    """The connection was made (or was being made) but no answer came within the time allowed."""


class GaveUp(TransientIcError):
    """A read kept failing until the network budget (PREP_NETWORK_TIMEOUT) ran out."""


class MalformedReply(PermanentIcError):
    """A replica's answer is not what the interface specification says it is (wrong shape or type)."""


class ExpiryRefused(PermanentIcError):
    """The replica refused a request's ingress expiry (expired, or this machine's clock is off)."""


class CallExpired(TransientIcError):
    """The call provably never executed (unknown to the replica past its expiry): sign a new one."""


class QuerySignatureError(PermanentIcError):
    """A query reply is not signed by a node of the canister's subnet (missing, forged or stale)."""
