"""`IcClient`: signed query, call and read_state over one `Wire`, every answer verified.

icp-py-core hashes and signs requests (its request-id hash and Identity); this module owns the
envelope bytes and the answers. Its `Agent` is not used: it opens a new HTTP client per request, signs
a fresh request on every `update` (a retry could execute twice) and verifies certificates against the
mainnet key only. Here a call is signed once; `delivery.deliver` resends those bytes. Reads retry
within the network budget (`retry.RetryPolicy`); update answers and read_state are certified, query
answers carry node signatures checked against the subnet's node keys.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from icp_agent.agent import IC_REQUEST_DOMAIN_SEPARATOR, to_request_id
from icp_certificate.certificate import IC_ROOT_KEY, Certificate
from icp_principal import Principal

from pipeline.ic import replies
from pipeline.ic.calls import CallResult, Outcome, RequestStatus, SignedCall, rejection_error
from pipeline.ic.certificate import (
    DEFAULT_MAX_AGE_NS,
    certificate_time,
    check_time,
    subnet_of,
    verify_certificate,
)
from pipeline.ic.clock import ReplicaClock
from pipeline.ic.delivery import deliver
from pipeline.ic.errors import (
    CallExpired,
    ConnectFailed,
    ExpiryRefused,
    GaveUp,
    MalformedReply,
    PermanentIcError,
    QuerySignatureError,
    TransientIcError,
)
from pipeline.ic.identity import IcIdentity
from pipeline.ic.network import Network
from pipeline.ic.query_signatures import NodeKeys, node_keys_from, verify_query_signatures
from pipeline.ic.retry import RetryPolicy, Waits, say_on_stderr
from pipeline.ic.transport import Wire, WireResponse, default_wire
from pipeline.ic.wire import encode_envelope

__all__ = ["CallResult", "IcClient", "Outcome", "RequestStatus", "RetryPolicy", "SignedCall"]

DEFAULT_INGRESS_EXPIRY_S = 240.0  # the IC accepts at most 5 minutes ahead
NS_PER_S = 1_000_000_000
# Expiries tried when the replica refuses ours: local time plus these, until one lands in its window
# (about 5 minutes after its own time). Covers a local clock up to ~30 minutes off either way.
_CLOCK_PROBE_OFFSETS_S = [150 + 290 * k for k in (0, -1, 1, -2, 2, -3, 3, -4, 4, -5, 5, -6, 6)]


@lru_cache(maxsize=1024)
def principal_bytes(text: str) -> bytes:
    try:
        return Principal.from_str(text).bytes
    except ValueError as err:
        raise PermanentIcError(f"'{text}' is not a valid principal: {err}") from None


class IcClient:
    """Thread-safe client for one network and identity; certificate and query-signature checks always on.

    `wire` is the network (default: a pooled http.client wire, httpx behind a proxy; tests pass their
    own). `root_key` overrides the network's (mainnet: built in; others: fetched once from
    /api/v2/status). `clock` is this machine's clock in ns (tests skew it); `say` gets the lines meant
    for the user's terminal (waits, clock correction).
    """

    def __init__(
        self,
        network: Network,
        identity: IcIdentity,
        *,
        root_key: bytes | None = None,
        ingress_expiry_s: float = DEFAULT_INGRESS_EXPIRY_S,
        retry: RetryPolicy | None = None,
        max_connections: int = 32,
        certificate_max_age_ns: int = DEFAULT_MAX_AGE_NS,
        wire: Wire | None = None,
        clock: Callable[[], int] = time.time_ns,
        say: Callable[[str], None] = say_on_stderr,
    ) -> None:
        self.network = network
        self.identity = identity
        self.ingress_expiry_s = ingress_expiry_s
        self.retry = retry or RetryPolicy()
        self.clock = ReplicaClock(clock, say)
        self.waits = Waits(self.retry, say)
        self._root_key = IC_ROOT_KEY if network.is_mainnet and root_key is None else root_key
        self._lock = threading.Lock()
        self._certificate_max_age_ns = certificate_max_age_ns
        self._sender = principal_bytes(identity.principal)
        self._node_keys: dict[str, NodeKeys] = {}
        self.wire = wire or default_wire(
            network.url, connect_timeout=self.retry.connect_timeout_s, max_connections=max_connections
        )

    @property
    def principal(self) -> str:
        return self.identity.principal

    def close(self) -> None:
        self.waits.close()
        self.wire.close()

    def __enter__(self) -> IcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- root key -------------------------------------------------------------------------------

    @property
    def root_key(self) -> bytes:
        """DER root key: mainnet's built-in one, else fetched once from /api/v2/status."""
        if self._root_key is None:
            with self._lock:
                if self._root_key is None:
                    self._root_key = self._fetch_root_key()
        return self._root_key

    def _fetch_root_key(self) -> bytes:
        status = self._read("GET", "/api/v2/status", None)
        key = status.get("root_key")
        if not isinstance(key, bytes) or len(key) > 512:
            raise PermanentIcError(
                f"{self.network.url}/api/v2/status has no root_key; is this an IC replica?"
            )
        return key

    # ---- query ----------------------------------------------------------------------------------

    def query(self, canister_id: str, method: str, arg: bytes) -> bytes:
        """The reply of a query, once a node of the canister's subnet is shown to have signed it."""
        keys = self.node_keys(canister_id)
        content = self._content("query", canister_id, method, arg)
        answer = self._read(
            "POST", f"/api/v3/canister/{canister_id}/query", lambda: self._sign(self._restamped(content))[1]
        )
        request_id = to_request_id(content)  # the one finally sent (the expiry may have been corrected)
        where = f"query {method} on {canister_id} at {self.network.url}"
        verify_query_signatures(
            answer,
            request_id,
            keys,
            now_ns=self.clock.now_ns(),
            max_age_ns=self._certificate_max_age_ns,
            where=where,
        )
        outcome = replies.query_outcome(answer, where)
        if isinstance(outcome, CallResult):
            raise rejection_error(canister_id, method, outcome)
        return outcome

    def node_keys(self, canister_id: str) -> NodeKeys:
        """The public keys of the nodes of the canister's subnet, read (certified) once per subnet."""
        with self._lock:
            known = self._node_keys.get(canister_id)
        if known is not None:
            return known
        certificate = self._read_state(canister_id, [[b"subnet"]])
        subnet_id = subnet_of(certificate, self.root_key)
        if subnet_id is None:
            raise QuerySignatureError(
                f"the certified state of {self.network.url} does not show which subnet hosts {canister_id}",
                hint="query answers cannot be verified without its node keys; is this an IC replica?",
            )
        with self._lock:
            for keys in self._node_keys.values():
                if keys.subnet_id == subnet_id:
                    self._node_keys[canister_id] = keys
                    return keys
        keys = node_keys_from(certificate, subnet_id, where=f"{self.network.url} (canister {canister_id})")
        with self._lock:
            self._node_keys[canister_id] = keys
        return keys

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
        response = self._exchange("POST", f"/api/v4/canister/{call.route}/call", call.envelope)
        if response.status_code == 202 or not response.content:
            return None
        where = f"call {call.method} on {call.canister_id} at {self.network.url}"
        answer = replies.decode_map(response.content, where)
        status = answer.get("status")
        if status == "replied":
            certificate = self._verified(replies.field(answer, "certificate", bytes, where), call.route)
            found = replies.status_from_certificate(certificate, call.request_id)
            if found.status in ("replied", "rejected"):
                return CallResult(
                    found.status, found.reply, found.reject_code, found.reject_message, found.error_code
                )
            return None
        if status == "non_replicated_rejection":
            return replies.rejection(answer, where)
        if status == "accepted":
            return None
        raise MalformedReply(f"{where}: unexpected answer status {replies.show(status)}")

    def request_status(self, call: SignedCall, *, patient: bool = True) -> RequestStatus:
        """The certified status of a call; `patient=False` asks once (the caller retries)."""
        paths = [[b"request_status", call.request_id]]
        certificate = self._read_state(call.route, paths, patient=patient)
        return replies.status_from_certificate(certificate, call.request_id)

    def call(
        self, canister_id: str, method: str, arg: bytes, *, effective_canister_id: str | None = None
    ) -> bytes:
        """Sign once, then deliver; re-signed only when the first call provably never ran."""
        route = {"effective_canister_id": effective_canister_id}
        try:
            return self.settle(self.prepare_call(canister_id, method, arg, **route))
        except CallExpired:
            if not self.clock.corrected:
                raise
            # Signed with the uncorrected clock: it never ran, so a fresh signature is safe.
            return self.settle(self.prepare_call(canister_id, method, arg, **route))

    def settle(self, call: SignedCall) -> bytes:
        """The reply of a prepared call, resending its envelope on transient failures until expiry."""
        outcome = deliver(self, call)
        if outcome.status == "done":
            raise PermanentIcError(
                f"call {call.method} on {call.canister_id} executed, but its reply has been pruned",
                hint="the replica keeps replies only for a few minutes; check the canister's state",
            )
        return outcome.reply or b""

    # ---- canister state -------------------------------------------------------------------------

    def module_hash(self, canister_id: str) -> bytes | None:
        return self._canister_field(canister_id, b"module_hash")

    def controllers(self, canister_id: str) -> list[str] | None:
        raw = self._canister_field(canister_id, b"controllers")
        if raw is None:
            return None
        return replies.principals(raw, f"controllers of {canister_id}")

    def metadata(self, canister_id: str, name: str) -> bytes | None:
        """A public metadata section (e.g. "candid:service"), None when the canister has none by that name."""
        return self._canister_field(canister_id, b"metadata", name.encode())

    def subnet_of(self, canister_id: str) -> str | None:
        """The principal of the subnet hosting the canister (certified); None when not shown."""
        subnet = subnet_of(self._read_state(canister_id, [[b"subnet"]]), self.root_key)
        return None if subnet is None else Principal(subnet).to_str()

    def _canister_field(self, canister_id: str, *path: bytes) -> bytes | None:
        full = [b"canister", principal_bytes(canister_id), *path]
        value = self._read_state(canister_id, [full]).lookup(full)
        return None if value is None else bytes(value)

    def _read_state(
        self, canister_id: str, paths: Sequence[Sequence[bytes]], *, patient: bool = True
    ) -> Certificate:
        content = {
            "request_type": "read_state",
            "sender": self._sender,
            "paths": [list(p) for p in paths],
            "ingress_expiry": self._expiry_ns(),
        }
        where = f"read_state on {canister_id} at {self.network.url}"
        answer = self._read(
            "POST",
            f"/api/v3/canister/{canister_id}/read_state",
            lambda: self._sign(self._restamped(content))[1],
            patient=patient,
        )
        return self._verified(replies.field(answer, "certificate", bytes, where), canister_id)

    # ---- clock ----------------------------------------------------------------------------------

    def sync_clock(self, canister_id: str) -> None:
        """After the replica refused our expiry: find its time from a certificate (probing expiries
        around the local clock until one is accepted) and use it from now on."""
        if self.clock.corrected:
            return
        path = f"/api/v3/canister/{canister_id}/read_state"
        for offset_s in _CLOCK_PROBE_OFFSETS_S:
            content = {
                "request_type": "read_state",
                "sender": self._sender,
                "paths": [[b"time"]],
                "ingress_expiry": self.clock.local_ns() + offset_s * NS_PER_S,
            }
            try:
                answer = replies.decode_map(
                    self._exchange("POST", path, self._sign(content)[1]).content, path
                )
            except ExpiryRefused:
                continue
            certificate = verify_certificate(
                replies.field(answer, "certificate", bytes, path),
                principal_bytes(canister_id),
                self.root_key,
                max_age_ns=None,
            )
            self.clock.observe(certificate_time(certificate), self.network.url)
            return
        raise PermanentIcError(
            f"{self.network.url} refuses every request expiry prep tries: this machine's clock is off "
            "by more than half an hour",
            hint="set the system clock (e.g. enable NTP) and try again",
        )

    # ---- plumbing -------------------------------------------------------------------------------

    def _verified(self, certificate_cbor: bytes, canister_id: str) -> Certificate:
        """Verified signature chain; the time checked against the replica-corrected clock."""
        certificate = verify_certificate(
            certificate_cbor, principal_bytes(canister_id), self.root_key, max_age_ns=None
        )
        self.clock.observe(certificate_time(certificate), self.network.url)
        check_time(certificate, self.clock.now_ns(), self._certificate_max_age_ns)
        return certificate

    def _expiry_ns(self) -> int:
        return self.clock.now_ns() + int(self.ingress_expiry_s * NS_PER_S)

    def _restamped(self, content: dict[str, Any]) -> dict[str, Any]:
        """`content` with its expiry recomputed once the clock has been corrected (else unchanged)."""
        if self.clock.corrected:
            content["ingress_expiry"] = self._expiry_ns()
            if "nonce" in content:
                content["nonce"] = secrets.token_bytes(8)
        return content

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

    def _read(
        self, verb: str, path: str, body: Callable[[], bytes] | None, *, patient: bool = True
    ) -> dict[str, Any]:
        """An idempotent request (status, query, read_state) and its CBOR answer, retried on transient
        failures until the network budget is spent. `body` signs the envelope (again after a clock
        correction); `patient=False` tries once."""
        policy = self.retry
        url = self.network.url + path
        started = time.monotonic()
        deadline = started + policy.budget_s
        attempts = 0
        clock_synced = False
        with self.waits.watch(url) as wait:
            while True:
                attempts += 1
                remaining = max(deadline - time.monotonic(), 0.001)
                try:
                    envelope = body() if body is not None else None
                    return replies.decode_map(
                        self._exchange(verb, path, envelope, timeout=remaining).content, url
                    )
                except ExpiryRefused:
                    if clock_synced or "/canister/" not in path:
                        raise
                    clock_synced = True
                    self.sync_clock(path.split("/")[4])
                    continue
                except TransientIcError as err:
                    if not patient:
                        raise
                    wait.cause = err.message
                    last = err
                patience = policy.budget_s
                if isinstance(last, ConnectFailed):  # nothing listens: that rarely changes within seconds
                    patience = min(policy.refused_patience_s, patience)
                    wait.until = f"gives up after {patience:g} s of refused connections"
                delay = policy.error_delay(attempts)
                elapsed = time.monotonic() - started
                if elapsed + delay >= min(patience, deadline - started):
                    raise _gave_up(url, elapsed, attempts, last, policy) from last
                time.sleep(delay)

    def _exchange(
        self, verb: str, path: str, body: bytes | None, *, timeout: float | None = None
    ) -> WireResponse:
        response = self.wire.request(verb, path, body, timeout=timeout or self.retry.budget_s)
        replies.raise_for_http_status(response, self.network.url + path)
        return response


def _gave_up(url: str, elapsed: float, attempts: int, last: TransientIcError, policy: RetryPolicy) -> GaveUp:
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    cause = last.message.removeprefix(f"{url}: ")
    check = last.hint or "check that the replica is up and reachable from here"
    return GaveUp(
        f"{url}: gave up after {elapsed:.0f} s ({tries}); last error: {cause}",
        hint=f"{check}; {policy.setting()}",
    )
