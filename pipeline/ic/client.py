"""`IcClient`: signed query, call and read_state over one pooled, thread-safe HTTP client.

icp-py-core hashes and signs requests (its request-id hash and Identity); this module owns the
envelope bytes, the transport and the retry rules. Its `Agent` is not used: it opens a new HTTP client per
request, signs a fresh request on every `update` (a retry could execute twice) and verifies
certificates against the mainnet key only. Here a call is signed once; retries resend those bytes.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cbor2
import httpx
from icp_agent.agent import IC_REQUEST_DOMAIN_SEPARATOR, to_request_id
from icp_certificate.certificate import IC_ROOT_KEY, Certificate
from icp_principal import Principal

from pipeline.ic.certificate import DEFAULT_MAX_AGE_NS, plain, verify_certificate
from pipeline.ic.errors import CallRejected, PermanentIcError, TransientIcError
from pipeline.ic.identity import IcIdentity
from pipeline.ic.network import Network
from pipeline.ic.transport import StdlibTransport, WireResponse, needs_proxy
from pipeline.ic.wire import encode_envelope

DEFAULT_INGRESS_EXPIRY_S = 240.0  # the IC accepts at most 5 minutes ahead
TERMINAL_STATUSES = ("replied", "rejected", "done")
_IN_FLIGHT_PATIENCE_NS = 5 * 60 * 1_000_000_000
_HINTS_BY_ERROR_CODE = {
    "IC0207": "the canister is out of cycles: top it up",
    "IC0301": "no such canister on this network: check --canister and --network",
    "IC0302": "the canister has no such method: is it the canister kind you think?",
    "IC0406": "the canister refused the message (often: this identity is not allowed); try a controller",
    "IC0502": "the canister trapped: its message says why",
    "IC0503": "the canister trapped: its message says why",
    "IC0507": "the canister ran out of memory",
    "IC0508": "the canister is stopped: start it",
    "IC0512": "only a controller may do this: use a controller identity",
    "IC0522": "the message hit the instruction limit",
    "IC0536": "the canister has no such method: is it the canister kind you think?",
}


@dataclass(frozen=True)
class SignedCall:
    """One signed update call. Resending `envelope` is the only exactly-once retry."""

    canister_id: str
    method: str
    request_id: bytes
    envelope: bytes
    expiry_ns: int
    effective_canister_id: str | None = None  # calls to aaaaa-aa: the canister they are about

    @property
    def route(self) -> str:
        """The canister id in the URL (and whose subnet certifies the outcome)."""
        return self.effective_canister_id or self.canister_id


@dataclass(frozen=True)
class CallResult:
    status: str  # "replied" | "rejected"
    reply: bytes | None = None
    reject_code: int | None = None
    reject_message: str | None = None
    error_code: str | None = None


@dataclass(frozen=True)
class RequestStatus:
    status: str  # "unknown" | "received" | "processing" | "replied" | "rejected" | "done"
    reply: bytes | None = None
    reject_code: int | None = None
    reject_message: str | None = None
    error_code: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff, each delay drawn from [d/2, d]; `query_attempts` bounds retries of reads.

    `resubmit_after_s`: how long an accepted call may stay "unknown" (not yet in a block) before its
    envelope is sent again.
    """

    first_delay_s: float = 0.05
    max_delay_s: float = 2.0
    multiplier: float = 2.0
    query_attempts: int = 4
    poll_first_delay_s: float = 0.01
    poll_max_delay_s: float = 1.0
    resubmit_after_s: float = 5.0

    def delays(self, first: float, cap: float):
        delay = first
        while True:
            yield random.uniform(delay / 2, delay)
            delay = min(delay * self.multiplier, cap)


def rejection_error(canister_id: str, method: str, outcome: CallResult | RequestStatus) -> CallRejected:
    """The user-facing error for a certified reject, with the replica's words and a hint by error code."""
    code = outcome.error_code or ""
    return CallRejected(
        f"{method} on {canister_id} was rejected (reject code {outcome.reject_code}"
        + (f", {code}" if code else "")
        + f"): {outcome.reject_message}",
        reject_code=outcome.reject_code or 0,
        reject_message=outcome.reject_message or "",
        error_code=outcome.error_code,
        hint=_HINTS_BY_ERROR_CODE.get(code),
    )


@lru_cache(maxsize=1024)
def principal_bytes(text: str) -> bytes:
    try:
        return Principal.from_str(text).bytes
    except ValueError as err:
        raise PermanentIcError(f"'{text}' is not a valid principal: {err}") from None


class IcClient:
    """Thread-safe client for one network and identity; certificate verification is always on.

    One pool of keep-alive connections serves every thread (`StdlibTransport`; httpx when a proxy is set
    or a test swaps the transport). `root_key` overrides the network's (mainnet:
    built in; others: fetched once from /api/v2/status). `transport` swaps the HTTP transport (tests).
    """

    def __init__(
        self,
        network: Network,
        identity: IcIdentity,
        timeout: float = 60.0,
        *,
        root_key: bytes | None = None,
        ingress_expiry_s: float = DEFAULT_INGRESS_EXPIRY_S,
        retry: RetryPolicy | None = None,
        max_connections: int = 32,
        certificate_max_age_ns: int = DEFAULT_MAX_AGE_NS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.network = network
        self.identity = identity
        self.ingress_expiry_s = ingress_expiry_s
        self.retry = retry or RetryPolicy()
        self._root_key = IC_ROOT_KEY if network.is_mainnet and root_key is None else root_key
        self._root_key_lock = threading.Lock()
        self._certificate_max_age_ns = certificate_max_age_ns
        self._sender = principal_bytes(identity.principal)
        self._wire: StdlibTransport | None = None
        self._http: httpx.Client | None = None
        if transport is None and not needs_proxy(network.url):
            self._wire = StdlibTransport(
                network.url,
                connect_timeout=min(timeout, 10.0),
                read_timeout=timeout,
                max_idle=max_connections,
            )
        else:
            self._http = httpx.Client(
                base_url=network.url,
                timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                limits=httpx.Limits(
                    max_connections=max_connections, max_keepalive_connections=max_connections
                ),
                headers={"Content-Type": "application/cbor"},
                transport=transport,
            )

    @property
    def principal(self) -> str:
        return self.identity.principal

    def close(self) -> None:
        if self._wire is not None:
            self._wire.close()
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> IcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- root key -------------------------------------------------------------------------------

    @property
    def root_key(self) -> bytes:
        """DER root key: mainnet's built-in one, else fetched once from /api/v2/status."""
        if self._root_key is None:
            with self._root_key_lock:
                if self._root_key is None:
                    self._root_key = self._fetch_root_key()
        return self._root_key

    def _fetch_root_key(self) -> bytes:
        status = self._read_cbor("GET", "/api/v2/status", None, attempts=self.retry.query_attempts)
        key = status.get("root_key") if isinstance(status, dict) else None
        if not isinstance(key, bytes):
            raise PermanentIcError(
                f"{self.network.url}/api/v2/status has no root_key; is this an IC replica?"
            )
        return key

    # ---- query ----------------------------------------------------------------------------------

    def query(self, canister_id: str, method: str, arg: bytes) -> bytes:
        content = self._content("query", canister_id, method, arg)
        _, envelope = self._sign(content)
        answer = self._read_cbor(
            "POST", f"/api/v3/canister/{canister_id}/query", envelope, attempts=self.retry.query_attempts
        )
        status = answer.get("status")
        if status == "replied":
            return bytes(answer["reply"]["arg"])
        if status == "rejected":
            raise rejection_error(canister_id, method, CallResult("rejected", **_reject_fields(answer)))
        raise PermanentIcError(f"query {method} on {canister_id}: unexpected answer status {status!r}")

    # ---- update calls ---------------------------------------------------------------------------

    def prepare_call(
        self, canister_id: str, method: str, arg: bytes, *, effective_canister_id: str | None = None
    ) -> SignedCall:
        content = self._content("call", canister_id, method, arg)
        request_id, envelope = self._sign(content)
        return SignedCall(
            canister_id, method, request_id, envelope, content["ingress_expiry"], effective_canister_id
        )

    def submit(self, call: SignedCall) -> CallResult | None:
        """POST the signed envelope once. A CallResult when the outcome is certified, else None."""
        response = self._post(f"/api/v4/canister/{call.route}/call", call.envelope)
        if response.status_code == 202 or not response.content:
            return None
        answer = _decode_cbor(response.content, self.network.url)
        status = answer.get("status")
        if status == "replied":
            certificate = self._verified(answer["certificate"], call.route)
            found = _status_from_certificate(certificate, call.request_id)
            if found.status in ("replied", "rejected"):
                return CallResult(
                    found.status, found.reply, found.reject_code, found.reject_message, found.error_code
                )
            return None
        if status == "non_replicated_rejection":
            return CallResult("rejected", **_reject_fields(answer))
        if status == "accepted":
            return None
        raise PermanentIcError(
            f"call {call.method} on {call.canister_id}: unexpected answer status {status!r}"
        )

    def request_status(self, call: SignedCall) -> RequestStatus:
        paths = [[b"request_status", call.request_id]]
        certificate = self._read_state(call.route, paths)
        return _status_from_certificate(certificate, call.request_id)

    def call(
        self, canister_id: str, method: str, arg: bytes, *, effective_canister_id: str | None = None
    ) -> bytes:
        """Sign once, then submit / poll until terminal; transient failures resend the same bytes."""
        return self.settle(
            self.prepare_call(canister_id, method, arg, effective_canister_id=effective_canister_id)
        )

    def settle(self, call: SignedCall) -> bytes:
        """The reply of a prepared call, resending its envelope on transient failures until expiry."""
        result = self._settle(call)
        if not result.is_terminal:
            raise TransientIcError(
                f"call {call.method} on {call.canister_id} is still {result.status} long after its expiry",
                hint=f"request id {call.request_id.hex()}: ask again later with request_status",
            )
        if result.status == "rejected":
            raise rejection_error(call.canister_id, call.method, result)
        if result.status == "done":
            raise PermanentIcError(
                f"call {call.method} on {call.canister_id} executed, but its reply has been pruned",
                hint="the replica keeps replies only for a few minutes; check the canister's state",
            )
        return result.reply or b""

    def _settle(self, call: SignedCall) -> RequestStatus:
        backoff = self.retry.delays(self.retry.first_delay_s, self.retry.max_delay_s)
        last_error: TransientIcError | None = None
        while time.time_ns() < call.expiry_ns:
            try:
                result = self.submit(call)
                if result is not None:
                    return RequestStatus(**vars(result))
                # Accepted: "unknown" is normal until the message is in a block, so give it a while.
                found: RequestStatus | None = self._poll(call, unknown_grace_s=self.retry.resubmit_after_s)
            except TransientIcError as err:
                last_error = err
                found = self._status_after_error(call)
            if found is not None and found.status != "unknown":
                return found  # terminal, or in the replica's hands far past the expiry
            time.sleep(next(backoff))
        # A message is only ever included in a block before its expiry: one last look settles it.
        found = self._status_after_error(call)
        if found is not None and found.status != "unknown":
            return found
        raise TransientIcError(
            f"call {call.method} on {call.canister_id} was not executed before it expired"
            + (f"; last error: {last_error}" if last_error else ""),
            hint="its request id can no longer run; it is safe to prepare and send a new call",
        )

    def _poll(self, call: SignedCall, *, unknown_grace_s: float) -> RequestStatus:
        """Poll until terminal; give up on "unknown" after the grace period (or the call's expiry),
        on "received"/"processing" only long after the expiry."""
        delays = self.retry.delays(self.retry.poll_first_delay_s, self.retry.poll_max_delay_s)
        give_up_unknown = time.monotonic() + unknown_grace_s
        while True:
            found = self.request_status(call)
            now_ns = time.time_ns()
            if found.is_terminal:
                return found
            if found.status == "unknown" and (
                time.monotonic() >= give_up_unknown or now_ns >= call.expiry_ns
            ):
                return found
            if found.status != "unknown" and now_ns >= call.expiry_ns + _IN_FLIGHT_PATIENCE_NS:
                return found
            time.sleep(next(delays))

    def _status_after_error(self, call: SignedCall) -> RequestStatus | None:
        """After a failed submit the call may still have landed (e.g. the reply was lost): ask."""
        try:
            return self._poll(call, unknown_grace_s=0.0)
        except TransientIcError:
            return None

    # ---- canister state -------------------------------------------------------------------------

    def module_hash(self, canister_id: str) -> bytes | None:
        return self._canister_field(canister_id, b"module_hash")

    def controllers(self, canister_id: str) -> list[str] | None:
        raw = self._canister_field(canister_id, b"controllers")
        if raw is None:
            return None
        return [Principal(bytes(p)).to_str() for p in plain(cbor2.loads(raw))]

    def metadata(self, canister_id: str, name: str) -> bytes | None:
        """A public metadata section (e.g. "candid:service"), None when the canister has none by that name."""
        return self._canister_field(canister_id, b"metadata", name.encode())

    def subnet_of(self, canister_id: str) -> str | None:
        """The principal of the subnet hosting the canister: the delegation's subnet, or (no delegation:
        the root key signed) the subnet whose public key is the root key; None when not shown."""
        certificate = self._read_state(canister_id, [[b"subnet"]])
        if certificate.delegation is not None:
            return Principal(bytes(certificate.delegation["subnet_id"])).to_str()
        subnets = certificate.lookup_tree([b"subnet"])
        for path in certificate.list_paths(subnets) if subnets is not None else []:
            if path[1:] == [b"public_key"] and certificate.lookup([b"subnet", *path]) == self.root_key:
                return Principal(bytes(path[0])).to_str()
        return None

    def _canister_field(self, canister_id: str, *path: bytes) -> bytes | None:
        full = [b"canister", principal_bytes(canister_id), *path]
        value = self._read_state(canister_id, [full]).lookup(full)
        return None if value is None else bytes(value)

    def _read_state(self, canister_id: str, paths: Sequence[Sequence[bytes]]) -> Certificate:
        content = {
            "request_type": "read_state",
            "sender": self._sender,
            "paths": [list(p) for p in paths],
            "ingress_expiry": self._expiry_ns(),
        }
        _, envelope = self._sign(content)
        answer = self._read_cbor(
            "POST", f"/api/v3/canister/{canister_id}/read_state", envelope, attempts=self.retry.query_attempts
        )
        if "certificate" not in answer:
            raise PermanentIcError(f"read_state on {canister_id}: answer has no certificate")
        return self._verified(answer["certificate"], canister_id)

    # ---- plumbing -------------------------------------------------------------------------------

    def _verified(self, certificate_cbor: Any, canister_id: str) -> Certificate:
        return verify_certificate(
            bytes(certificate_cbor),
            principal_bytes(canister_id),
            self.root_key,
            max_age_ns=self._certificate_max_age_ns,
        )

    def _expiry_ns(self) -> int:
        return time.time_ns() + int(self.ingress_expiry_s * 1e9)

    def _content(self, request_type: str, canister_id: str, method: str, arg: bytes) -> dict[str, Any]:
        return {
            "request_type": request_type,
            "sender": self._sender,
            "canister_id": principal_bytes(canister_id),
            "method_name": method,
            # icp-py-core's candid fast path and request-id hash want `bytes`; a memoryview is ~150x slower.
            "arg": arg if type(arg) is bytes else bytes(arg),
            "ingress_expiry": self._expiry_ns(),
            "nonce": secrets.token_bytes(8),
        }

    def _sign(self, content: dict[str, Any]) -> tuple[bytes, bytes]:
        """Request id and envelope bytes; icp-py-core hashes and signs, `wire` writes the CBOR."""
        request_id = to_request_id(content)
        if self.identity.is_anonymous:
            return request_id, encode_envelope({"content": content})
        public_key, signature = self.identity.sign(IC_REQUEST_DOMAIN_SEPARATOR + request_id)
        envelope = {"content": content, "sender_pubkey": public_key, "sender_sig": signature}
        return request_id, encode_envelope(envelope)

    def _read_cbor(self, verb: str, path: str, body: bytes | None, *, attempts: int) -> dict[str, Any]:
        """An idempotent request (status, query, read_state), retried on transient failures."""
        delays = self.retry.delays(self.retry.first_delay_s, self.retry.max_delay_s)
        attempt = 1
        while True:
            try:
                return _decode_cbor(self._send(verb, path, body).content, self.network.url)
            except TransientIcError:
                if attempt >= attempts:
                    raise
            attempt += 1
            time.sleep(next(delays))

    def _post(self, path: str, body: bytes) -> httpx.Response | WireResponse:
        return self._send("POST", path, body)

    def _send(self, verb: str, path: str, body: bytes | None) -> httpx.Response | WireResponse:
        try:
            if self._wire is not None:
                response: httpx.Response | WireResponse = self._wire.request(verb, path, body)
            else:
                assert self._http is not None
                response = self._http.request(verb, path, content=body)
        except httpx.ConnectError as err:
            raise TransientIcError(
                f"cannot reach {self.network.url}: is the replica running?", hint=f"connection failed: {err}"
            ) from None
        except httpx.TimeoutException:
            raise TransientIcError(f"{self.network.url}{path}: no answer within the timeout") from None
        except httpx.TransportError as err:
            raise TransientIcError(f"{self.network.url}{path}: transport error: {err!r}") from None
        _raise_for_http_status(response, self.network.url + path)
        return response


def _raise_for_http_status(response: httpx.Response | WireResponse, where: str) -> None:
    status = response.status_code
    if status < 400:
        return
    text = response.text.strip()[:500] or response.reason_phrase
    if status >= 500 or status == 429:
        raise TransientIcError(f"{where}: HTTP {status}: {text}")
    raise PermanentIcError(f"{where}: HTTP {status}: {text}", hint=_http_hint(status, text))


def _http_hint(status: int, text: str) -> str | None:
    lowered = text.lower()
    if "ingress_expiry" in lowered or "expir" in lowered:
        return "the request expired or this machine's clock is off"
    if status == 404:
        return "no such canister on this network: check --canister and --network"
    if status == 403:
        return "the replica refused this identity or signature"
    if status == 413:
        return "the message is too large: use smaller chunks"
    return None


def _decode_cbor(data: bytes, url: str) -> dict[str, Any]:
    try:
        value = plain(cbor2.loads(data))
    except Exception:
        raise PermanentIcError(f"{url} answered with something that is not CBOR: {data[:120]!r}") from None
    if not isinstance(value, dict):
        raise PermanentIcError(f"{url} answered with unexpected CBOR: {type(value).__name__}")
    return value


def _reject_fields(answer: dict[str, Any]) -> dict[str, Any]:
    error_code = answer.get("error_code")
    return {
        "reject_code": int(answer.get("reject_code") or 0),
        "reject_message": _text(answer.get("reject_message")) or "",
        "error_code": _text(error_code) if error_code is not None else None,
    }


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return bytes(value).decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def _status_from_certificate(certificate: Certificate, request_id: bytes) -> RequestStatus:
    raw = certificate.lookup_request_status(request_id)
    status = bytes(raw).decode() if raw is not None else "unknown"
    if status == "replied":
        return RequestStatus("replied", reply=certificate.lookup_reply(request_id))
    if status == "rejected":
        rejection = certificate.lookup_request_rejection(request_id)
        return RequestStatus(
            "rejected",
            reject_code=rejection["reject_code"],
            reject_message=rejection["reject_message"],
            error_code=rejection["error_code"],
        )
    return RequestStatus(status)
