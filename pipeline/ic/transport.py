"""The HTTP wire for IC requests: keep-alive http.client connections, pooled across threads.

httpx costs ~1 ms of CPU per request in URL and header handling, and its transport (httpcore + h11)
reads a body 64 KiB at a time through several Python layers into growing buffers: ~5 ms to receive a
1.4 MB read-back reply, ~2 ms to send a chunk, more than signing and certificate checks together.
http.client sends a body with one `sendall` and reads a sized body with one `read` into its final
buffer (~1.4 ms and ~1 ms). `IcClient` keeps httpx where its features matter: a proxy from the
environment, or a transport swapped in by tests.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import httpx

_CONNECT_ERRORS = (ConnectionRefusedError, socket.gaierror)
# A keep-alive connection the server has closed fails on reuse before any answer: resend on a fresh one
# (every IC request is safe to resend: a signed call executes at most once per request id).
_STALE_ERRORS = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
_HEADERS = {"Content-Type": "application/cbor", "User-Agent": "prep"}


@dataclass(frozen=True)
class WireResponse:
    status_code: int
    reason_phrase: str
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


def needs_proxy(url: str) -> bool:
    """Whether the environment routes `url` through a proxy (then httpx, which speaks to proxies, is used)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


class StdlibTransport:
    """Thread-safe: each request takes an idle connection (or opens one) and gives it back afterwards."""

    def __init__(self, base_url: str, *, connect_timeout: float, read_timeout: float, max_idle: int) -> None:
        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_idle = max_idle
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._ssl = ssl.create_default_context(cafile=certifi.where()) if self._https else None

    def request(self, method: str, path: str, body: bytes | None) -> WireResponse:
        """Raises httpx's ConnectError, ConnectTimeout, ReadTimeout or ReadError on transport failures."""
        target = self._prefix + path
        conn, reused = self._checkout()
        try:
            try:
                response = self._exchange(conn, method, target, body)
            except _STALE_ERRORS:
                if not reused:
                    raise
                conn.close()
                conn = self._connect()
                response = self._exchange(conn, method, target, body)
        except TimeoutError as err:
            connected = conn.sock is not None
            conn.close()
            raise (httpx.ReadTimeout if connected else httpx.ConnectTimeout)(str(err)) from None
        except _CONNECT_ERRORS as err:
            conn.close()
            raise httpx.ConnectError(str(err)) from None
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            raise httpx.ReadError(f"{type(err).__name__}: {err}") from None
        answer, keep = response
        if keep:
            self._checkin(conn)
        else:
            conn.close()
        return answer

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _exchange(
        self, conn: http.client.HTTPConnection, method: str, target: str, body: bytes | None
    ) -> tuple[WireResponse, bool]:
        if conn.sock is None:
            conn.connect()
            conn.sock.settimeout(self._read_timeout)
        conn.request(method, target, body=body, headers=_HEADERS)
        response = conn.getresponse()
        content = response.read()
        return WireResponse(response.status, response.reason, content), not response.will_close

    def _checkout(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(), False

    def _checkin(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self._connect_timeout, context=self._ssl
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self._connect_timeout)
