"""The http.client wire under IcClient: keep-alive reuse, reconnects, errors, and when httpx takes over."""

from __future__ import annotations

import threading

import pytest

from pipeline.ic.client import IcClient
from pipeline.ic.errors import ConnectFailed
from pipeline.ic.identity import anonymous_identity
from pipeline.ic.network import Network
from pipeline.ic.transport import HttpxWire, StdlibWire, needs_proxy


def _wire(url: str) -> StdlibWire:
    return StdlibWire(url, connect_timeout=5.0, max_idle=4)


def test_connections_are_reused_and_shared_by_threads(icsim) -> None:
    wire = _wire(icsim.url)
    try:
        first = wire.request("GET", "/api/v2/status", None, timeout=5.0)
        assert first.status_code == 200 and first.content
        answers = []
        threads = [
            threading.Thread(
                target=lambda: answers.append(wire.request("GET", "/api/v2/status", None, timeout=5.0))
            )
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [a.status_code for a in answers] == [200] * 8
        assert 1 <= len(wire._idle) <= 4
    finally:
        wire.close()


def test_a_connection_closed_by_a_restarted_replica_is_replaced(icsim) -> None:
    wire = _wire(icsim.url)
    try:
        wire.request("GET", "/api/v2/status", None, timeout=5.0)
        icsim.restart()  # same port; the pooled keep-alive connection is now dead
        assert wire.request("GET", "/api/v2/status", None, timeout=5.0).status_code == 200
    finally:
        wire.close()


def test_http_errors_come_back_as_responses(icsim) -> None:
    wire = _wire(icsim.url)
    try:
        answer = wire.request("POST", "/api/v3/canister/aaaaa-aa/query", b"not cbor", timeout=5.0)
        assert answer.status_code >= 400 and answer.text
    finally:
        wire.close()


def test_unreachable_port_is_a_connect_error() -> None:
    wire = _wire("http://127.0.0.1:9")
    with pytest.raises(ConnectFailed, match="cannot reach http://127.0.0.1:9") as refused:
        wire.request("GET", "/api/v2/status", None, timeout=5.0)
    assert isinstance(refused.value.__cause__, ConnectionRefusedError)  # the cause is kept


def test_proxy_from_the_environment_switches_to_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert not needs_proxy("https://icp-api.io")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert needs_proxy("https://icp-api.io")
    assert not needs_proxy("http://127.0.0.1:4943")
    monkeypatch.setenv("NO_PROXY", "icp-api.io")
    assert not needs_proxy("https://icp-api.io")
    monkeypatch.delenv("NO_PROXY")
    with IcClient(Network("ic", "https://icp-api.io", is_mainnet=True), anonymous_identity()) as client:
        assert isinstance(client.wire, HttpxWire)
