"""The IC HTTP interface (status, query, call v2/v3/v4, read_state) over a threading HTTP server."""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.icsim import management
from tests.icsim.canisters.base import Reject
from tests.icsim.certify import tagged
from tests.icsim.envelope import Envelope, EnvelopeError, parse
from tests.icsim.nodekey import FORGER
from tests.icsim.principal import MANAGEMENT_CANISTER, from_text, to_text
from tests.icsim.replica import TERMINAL, Replica
from tests.icsim.topology import Topology

MAX_REQUEST_BYTES = 2 * 1024 * 1024
ROUTE = re.compile(r"^/api/(v2|v3|v4)/(canister|subnet)/([a-z0-9-]+)/(query|call|read_state)$")
KNOWN_ROOTS = (b"time", b"request_status", b"canister", b"subnet", b"canister_ranges")


class IcHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], topology: Topology, sync_call_timeout: float) -> None:
        self.topology = topology
        self.sync_call_timeout = sync_call_timeout
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (timeouts, dropped replies) is normal here; anything else is reported."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def close_all_connections(self) -> None:
        with self.connections_lock:
            for conn in list(self.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: IcHttpServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests and benchmarks read their own output."""

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this Nagle + delayed ACK add ~40 ms per reply.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    # ---- plumbing -----------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str = "application/cbor") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _read_body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length", "-1"))
        if length < 0:
            self._send_text(411, "Content-Length required")
            return None
        if length > MAX_REQUEST_BYTES:
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
            self._send_text(
                413, f"Request body of {length} bytes exceeds the limit of {MAX_REQUEST_BYTES} bytes"
            )
            return None
        return self.rfile.read(length)

    # ---- endpoints ----------------------------------------------------------------

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/api/v2/status":
            self._send_text(404, f"Not found: {self.path}")
            return
        body = {
            "ic_api_version": "0.18.0",
            "impl_version": "icsim",
            "replica_health_status": "healthy",
            "root_key": self.server.topology.root_key.der,
        }
        self._send(200, tagged(body))

    def do_POST(self) -> None:
        match = ROUTE.match(self.path)
        if match is None:
            self._send_text(404, f"Not found: {self.path}")
            return
        version, scope, target, endpoint = match.groups()
        if (scope == "subnet" and endpoint != "read_state") or (version == "v4" and endpoint != "call"):
            self._send_text(404, f"Not found: {self.path}")
            return
        status = self.server.topology.faults.take_http_error(endpoint)
        body = self._read_body()
        if body is None:
            return
        if status is not None:
            self._send_text(status, f"icsim injected HTTP {status}")
            return
        try:
            target_id = from_text(target)
        except ValueError as exc:
            self._send_text(400, str(exc))
            return
        topology = self.server.topology
        try:
            if scope == "subnet":
                replica = topology.for_subnet(target_id)
                if replica is None:
                    raise EnvelopeError(404, f"Subnet {target} not found")
                self._read_state(replica, None, body)
            elif endpoint == "query":
                self._query(topology.for_canister(target_id), target_id, body)
            elif endpoint == "call":
                self._call(topology.for_canister(target_id), target_id, body, synchronous=version != "v2")
            else:
                self._read_state(topology.for_canister(target_id), target_id, body)
        except EnvelopeError as exc:
            self._send_text(exc.status, exc.message)

    def _query(self, replica: Replica, canister_id: bytes, body: bytes) -> None:
        envelope = parse(body, "query")
        _check_target(envelope, canister_id)
        result = replica.query(envelope)
        if isinstance(result, Reject):
            reply = {
                "status": "rejected",
                "reject_code": result.code,
                "reject_message": result.message,
                "error_code": result.error_code,
            }
        else:
            reply = {"status": "replied", "reply": {"arg": result}}
        if replica.faults.take_forgery(envelope.method_name):
            signed = FORGER.sign_query_response(reply, envelope.request_id, as_node=replica.node_key.node_id)
        else:
            signed = replica.node_key.sign_query_response(reply, envelope.request_id)
        self._send(200, tagged(signed))

    def _call(self, replica: Replica, canister_id: bytes, body: bytes, synchronous: bool) -> None:
        envelope = parse(body, "call")
        _check_target(envelope, canister_id)
        record = replica.submit(envelope, len(body), target=canister_id)
        faults = replica.faults
        drop = faults.take_drop(envelope.method_name)
        delay = faults.take_delay(envelope.method_name)
        finished = replica.wait(record, self.server.sync_call_timeout) if synchronous or drop else False
        if drop:
            self._drop()
            return
        if delay:
            time.sleep(delay)
        if not synchronous:
            self._send(202, b"", "text/plain")
        elif finished and record.status in TERMINAL:
            paths = [[b"time"], [b"request_status", record.request_id]]
            self._send(
                200, tagged({"status": "replied", "certificate": replica.certificate(paths, canister_id)})
            )
        else:
            self._send(202, tagged({"status": "accepted"}))

    def _read_state(self, replica: Replica, canister_id: bytes | None, body: bytes) -> None:
        envelope = parse(body, "read_state")
        paths = _paths(envelope)
        for path in paths:
            _check_path(replica, envelope, path, canister_id)
        self._send(200, tagged({"certificate": replica.certificate(paths, canister_id)}))


def _check_target(envelope: Envelope, target: bytes) -> None:
    """The URL names the effective canister: the callee, or for `aaaaa-aa` the canister the call is about."""
    callee = envelope.canister_id
    if callee == MANAGEMENT_CANISTER:
        try:
            callee = management.target_of(envelope.method_name, envelope.arg)
        except Reject as reject:
            raise EnvelopeError(400, str(reject)) from None
    if callee != target:
        raise EnvelopeError(
            400,
            f"Specified CanisterId {to_text(envelope.canister_id)} does not match effective canister id "
            f"in URL {to_text(target)}",
        )


def _paths(envelope: Envelope) -> list[list[bytes]]:
    raw = envelope.content["paths"]
    if not isinstance(raw, list) or not all(isinstance(p, list) for p in raw):
        raise EnvelopeError(
            400, "Could not parse body as read request: paths must be a list of lists of blobs"
        )
    return [[bytes(label) for label in path] for path in raw]


def _check_path(replica: Replica, envelope: Envelope, path: list[bytes], canister_id: bytes | None) -> None:
    if not path or path[0] not in KNOWN_ROOTS:
        raise EnvelopeError(404, "Invalid path requested.")
    if path[0] == b"canister" and (canister_id is None or len(path) < 2 or path[1] != canister_id):
        raise EnvelopeError(400, "Effective principal does not match the canister in the requested path")
    if path[0] == b"request_status" and len(path) >= 2:
        record = replica.record(path[1])
        if record is not None and record.sender != envelope.sender:
            raise EnvelopeError(
                403,
                f"Request 0x{path[1].hex()} was signed by another principal than {to_text(envelope.sender)}",
            )
