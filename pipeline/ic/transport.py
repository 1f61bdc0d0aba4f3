"""The network under `IcClient`: one `Wire` protocol, two implementations, prep's own errors.

`StdlibWire` (keep-alive http.client connections, pooled across threads) is the default: httpx costs
~1 ms of CPU per request in URL and header handling, and its transport (httpcore + h11) reads a body
64 KiB at a time through several Python layers into growing buffers: ~5 ms to receive a 1.4 MB
read-back reply, ~2 ms to send a chunk, more than signing and certificate checks together.
http.client sends a body with one `sendall` and reads a sized body with one `read` into its final
buffer (~1.4 ms and ~1 ms). `HttpxWire` is used where httpx's features matter: a proxy from the
environment. Tests implement `Wire` to put a recording or tampering layer between client and replica.

Both raise only `ConnectFailed`, `TimedOut` or `TransportError` (with the library's exception as
`__cause__`); HTTP error statuses come back as responses.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import urllib.request
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import certifi
import httpx

from pipeline.ic.errors import ConnectFailed, TimedOut, TransportError

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


class Wire(Protocol):
    """Sends one HTTP request to a replica; thread-safe. `timeout` bounds connect and each read."""

    url: str

    def request(self, method: str, path: str, body: bytes | None, *, timeout: float) -> WireResponse: ...

    def close(self) -> None: ...


def needs_proxy(url: str) -> bool:
    """Whether the environment routes `url` through a proxy (then httpx, which speaks to proxies, is used)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


def default_wire(url: str, *, connect_timeout: float, max_connections: int) -> Wire:
    if needs_proxy(url):
        return HttpxWire(url, connect_timeout=connect_timeout, max_connections=max_connections)
    return StdlibWire(url, connect_timeout=connect_timeout, max_idle=max_connections)


class StdlibWire:
    """Each request takes an idle connection (or opens one) and gives it back afterwards."""

    def __init__(self, url: str, *, connect_timeout: float, max_idle: int) -> None:
        parts = urlsplit(url)
        self.url = url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._connect_timeout = connect_timeout
        self._max_idle = max_idle
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._ssl = ssl.create_default_context(cafile=certifi.where()) if self._https else None

    def request(self, method: str, path: str, body: bytes | None, *, timeout: float) -> WireResponse:
        target = self._prefix + path
        conn, reused = self._checkout(timeout)
        try:
            try:
                response = self._exchange(conn, method, target, body, timeout)
            except _STALE_ERRORS:
                if not reused:
                    raise
                conn.close()
                conn = self._connect(timeout)
                response = self._exchange(conn, method, target, body, timeout)
        except TimeoutError as err:
            connected = conn.sock is not None
            conn.close()
            raise _timed_out(self.url + path, timeout, connected) from err
        except _CONNECT_ERRORS as err:
            conn.close()
            raise _connect_failed(self.url, err) from err
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            raise _broken(self.url + path, err) from err
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
        self, conn: http.client.HTTPConnection, method: str, target: str, body: bytes | None, timeout: float
    ) -> tuple[WireResponse, bool]:
        if conn.sock is None:
            conn.timeout = min(timeout, self._connect_timeout)
            conn.connect()
        conn.sock.settimeout(timeout)
        conn.request(method, target, body=body, headers=_HEADERS)
        response = conn.getresponse()
        content = response.read()
        return WireResponse(response.status, response.reason, content), not response.will_close

    def _checkout(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(timeout), False

    def _checkin(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        connect_timeout = min(timeout, self._connect_timeout)
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=connect_timeout, context=self._ssl
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=connect_timeout)


class HttpxWire:
    """httpx, for what http.client cannot do: proxies named by the environment (HTTPS_PROXY, ...)."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float,
        max_connections: int,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._connect_timeout = connect_timeout
        self._http = httpx.Client(
            base_url=self.url,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers=_HEADERS,
            transport=transport,
        )

    def request(self, method: str, path: str, body: bytes | None, *, timeout: float) -> WireResponse:
        limits = httpx.Timeout(timeout, connect=min(timeout, self._connect_timeout))
        try:
            response = self._http.request(method, path, content=body, timeout=limits)
        except httpx.TimeoutException as err:
            raise _timed_out(self.url + path, timeout, not isinstance(err, httpx.ConnectTimeout)) from err
        except httpx.ConnectError as err:
            raise _connect_failed(self.url, err) from err
        except httpx.TransportError as err:
            raise _broken(self.url + path, err) from err
        return WireResponse(response.status_code, response.reason_phrase, response.content)

    def close(self) -> None:
        self._http.close()


def _connect_failed(url: str, err: BaseException) -> ConnectFailed:
    return ConnectFailed(
        f"cannot reach {url}: is the replica running?",
        url=url,
        hint=f"connection failed ({err}); check --network and that the replica listens there",
    )


def _timed_out(url: str, timeout: float, connected: bool) -> TimedOut:
    if connected:
        return TimedOut(f"{url}: no answer within {timeout:.0f} s", url=url)
    return TimedOut(f"{url}: the connection was not accepted within {timeout:.0f} s", url=url)


def _broken(url: str, err: BaseException) -> TransportError:
    return TransportError(f"{url}: the connection broke ({type(err).__name__}: {err})", url=url)
