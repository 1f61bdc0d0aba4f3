"""IcClient against icsim (real HTTP interface, BLS certificates), verification always on."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import cbor2
import pytest

from pipeline.ic import candid
from pipeline.ic.certificate import verify_certificate
from pipeline.ic.client import IcClient, RetryPolicy
from pipeline.ic.errors import CallRejected, CertificateError, PermanentIcError, TransientIcError
from pipeline.ic.identity import anonymous_identity, load_identity
from pipeline.ic.network import Network
from pipeline.ic.transport import StdlibWire, WireResponse
from tests.fixtures_ic import IcWorld

CHUNK = "record { filename : text; chunk : blob; chunksize : nat64; offset : nat64 }"
UPLOAD_RESULT = (
    "variant { Ok : record { filename : text; filesize : nat64; filesha256 : text };"
    " Err : variant { Other : text; StatusCode : nat16 } }"
)
FAST_RETRY = RetryPolicy(first_delay_s=0.01, max_delay_s=0.05, resend_after_s=0.5, refused_patience_s=0.3)


def _chunk_arg(data: bytes, offset: int = 0, name: str = "models/m.gguf") -> bytes:
    return candid.encode(
        [CHUNK], [{"filename": name, "chunk": data, "chunksize": len(data), "offset": offset}]
    )


def _client(world: IcWorld, who: str = "ed25519", **kwargs) -> IcClient:
    identity = anonymous_identity() if who == "anonymous" else load_identity(pem=getattr(world, who).path)
    network = Network("icsim", world.sim.url, is_mainnet=False)
    return IcClient(network, identity, **{"retry": FAST_RETRY, **kwargs})


def _calls(world: IcWorld, method: str) -> int:
    return world.sim.canister("llama_cpp").counters.calls[method]


@pytest.mark.parametrize("who", ["ed25519", "secp256k1"])
def test_query_and_update_with_signed_identities(ic_world: IcWorld, who: str) -> None:
    data = hashlib.sha256(who.encode()).digest() * 1000
    with _client(ic_world, who) as client:
        (whoami,) = candid.decode(
            client.query(ic_world.canister_id, "whoami", candid.encode([], [])), ["text"]
        )
        assert whoami == getattr(ic_world, who).principal == client.principal
        reply = client.call(ic_world.canister_id, "file_upload_chunk", _chunk_arg(data))
    (result,) = candid.decode(reply, [UPLOAD_RESULT])
    assert result == {"Ok": {"filename": "models/m.gguf", "filesize": len(data), "filesha256": _sha(data)}}
    assert ic_world.sim.canister("llama_cpp").file_path("models/m.gguf").read_bytes() == data


def test_anonymous_query_and_refused_update(ic_world: IcWorld) -> None:
    with _client(ic_world, "anonymous") as client:
        (whoami,) = candid.decode(
            client.query(ic_world.canister_id, "whoami", candid.encode([], [])), ["text"]
        )
        assert whoami == "2vxsx-fae"
        (result,) = candid.decode(
            client.call(ic_world.canister_id, "file_upload_chunk", _chunk_arg(b"x")), [UPLOAD_RESULT]
        )
    assert "Err" in result


def test_read_state_fields(ic_world: IcWorld) -> None:
    model = ic_world.sim.canister("llama_cpp")
    with _client(ic_world) as client:
        assert client.module_hash(ic_world.canister_id) == model.module_hash
        assert sorted(client.controllers(ic_world.canister_id)) == sorted(
            [ic_world.ed25519.principal, ic_world.secp256k1.principal]
        )
        service = client.metadata(ic_world.canister_id, "candid:service")
        assert service is not None and b"file_upload_chunk" in service
        assert client.metadata(ic_world.canister_id, "no-such-section") is None


def test_prepare_submit_status_and_resubmission_executes_once(ic_world: IcWorld) -> None:
    with _client(ic_world) as client:
        call = client.prepare_call(ic_world.canister_id, "file_upload_chunk", _chunk_arg(b"a" * 100))
        assert client.request_status(call).status == "unknown"
        first = client.submit(call)
        status = client.request_status(call)
        again = client.submit(call)
    assert first is not None and first.status == "replied"
    assert status.status == "replied" and status.reply == first.reply
    assert again is None or again.reply == first.reply
    assert _calls(ic_world, "file_upload_chunk") == 1


def test_dropped_reply_is_settled_without_executing_twice(ic_world: IcWorld) -> None:
    ic_world.sim.faults.drop_replies(1, method="file_upload_chunk")
    with _client(ic_world) as client:
        reply = client.call(ic_world.canister_id, "file_upload_chunk", _chunk_arg(b"b" * 1000))
    assert "Ok" in candid.decode(reply, [UPLOAD_RESULT])[0]
    assert ic_world.sim.faults.fired["drop"] == 1
    assert _calls(ic_world, "file_upload_chunk") == 1


def test_transient_http_errors_are_retried(ic_world: IcWorld) -> None:
    ic_world.sim.faults.http_errors(2, status=503, endpoint="call")
    with _client(ic_world) as client:
        reply = client.call(ic_world.canister_id, "file_upload_chunk", _chunk_arg(b"c" * 10))
    assert "Ok" in candid.decode(reply, [UPLOAD_RESULT])[0]
    assert ic_world.sim.faults.fired["http_error"] == 2
    assert _calls(ic_world, "file_upload_chunk") == 1


def test_submit_reports_transient_and_permanent_http_errors(ic_world: IcWorld) -> None:
    with _client(ic_world) as client:
        call = client.prepare_call(ic_world.canister_id, "file_upload_chunk", _chunk_arg(b"d"))
        ic_world.sim.faults.http_errors(1, status=429, endpoint="call")
        with pytest.raises(TransientIcError, match="HTTP 429"):
            client.submit(call)
        ic_world.sim.faults.http_errors(1, status=503, endpoint="call")
        with pytest.raises(TransientIcError, match="HTTP 503"):
            client.submit(call)
        ic_world.sim.faults.http_errors(1, status=400, endpoint="call")
        with pytest.raises(PermanentIcError) as err:
            client.submit(call)
        assert not isinstance(err.value, TransientIcError)


def test_trap_is_a_permanent_rejection_with_the_replicas_message(ic_world: IcWorld) -> None:
    from icp_principal import Principal

    raw_id = Principal.from_str(ic_world.canister_id).bytes
    ic_world.sim.faults.trap_on_call(raw_id, "file_upload_chunk", 1)
    with _client(ic_world) as client, pytest.raises(CallRejected) as err:
        client.call(ic_world.canister_id, "file_upload_chunk", _chunk_arg(b"e"))
    assert err.value.reject_code == 5 and err.value.error_code == "IC0503"
    assert err.value.reject_message and err.value.reject_message in str(err.value)


def test_unknown_method_and_unknown_canister_are_permanent(ic_world: IcWorld) -> None:
    with _client(ic_world) as client:
        with pytest.raises(CallRejected) as err:
            client.call(ic_world.canister_id, "no_such_method", candid.encode([], []))
        assert err.value.reject_code == 3 or err.value.error_code in ("IC0302", "IC0536")
        with pytest.raises(PermanentIcError) as missing:
            client.query("xmx3s-gyaaa-aaaaa-ae4hq-cai", "health", candid.encode([], []))
        assert not isinstance(missing.value, TransientIcError)


def test_expired_request_is_refused(ic_world: IcWorld) -> None:
    with _client(ic_world, ingress_expiry_s=-1.0) as client, pytest.raises(PermanentIcError, match="expir"):
        client.submit(client.prepare_call(ic_world.canister_id, "file_upload_chunk", _chunk_arg(b"f")))
    assert _calls(ic_world, "file_upload_chunk") == 0


def test_unreachable_replica() -> None:
    network = Network("gone", "http://127.0.0.1:9", is_mainnet=False)
    with (
        IcClient(network, anonymous_identity(), retry=FAST_RETRY) as client,
        pytest.raises(TransientIcError, match=r"cannot reach http://127.0.0.1:9: is the replica running\?"),
    ):
        client.query("rrkah-fqaaa-aaaaa-aaaaq-cai", "health", candid.encode([], []))


class _Tamper:
    """A Wire in front of the real one: can alter read_state certificates and keeps the last one."""

    def __init__(self, url: str, tamper: bool) -> None:
        self._inner = StdlibWire(url, connect_timeout=5.0, max_idle=4)
        self.url = self._inner.url
        self.tamper = tamper
        self.last_certificate: bytes | None = None

    def request(self, method: str, path: str, body: bytes | None, *, timeout: float) -> WireResponse:
        response = self._inner.request(method, path, body, timeout=timeout)
        if not path.endswith("/read_state"):
            return response
        answer = cbor2.loads(response.content)
        certificate = bytes(answer["certificate"])
        self.last_certificate = certificate
        if self.tamper:
            decoded = cbor2.loads(certificate)
            tree = _change_first_leaf(_lists(decoded["tree"]))
            certificate = cbor2.dumps({"tree": tree, "signature": decoded["signature"]})
        content = cbor2.dumps({"certificate": certificate})
        return WireResponse(response.status_code, response.reason_phrase, content)

    def close(self) -> None:
        self._inner.close()


def _lists(node):
    return [_lists(x) for x in node] if isinstance(node, (list, tuple)) else node


def _change_first_leaf(node):
    if node[0] == 3:
        return [3, bytes(node[1]) + b"!"]
    for index, child in enumerate(node):
        if isinstance(child, list):
            changed = _change_first_leaf(child)
            if changed is not None:
                return [*node[:index], changed, *node[index + 1 :]]
    return None


def test_tampered_certificate_is_rejected(ic_world: IcWorld) -> None:
    tamper = _Tamper(ic_world.sim.url, tamper=True)
    with _client(ic_world, wire=tamper) as client, pytest.raises(CertificateError):
        client.module_hash(ic_world.canister_id)


def test_wrong_root_key_is_rejected(ic_world: IcWorld, tmp_path) -> None:
    other = ic_world.sim.root_key[:-1] + bytes([ic_world.sim.root_key[-1] ^ 1])
    with _client(ic_world, root_key=other) as client, pytest.raises(CertificateError):
        client.module_hash(ic_world.canister_id)


def test_root_key_is_fetched_for_local_networks_and_used(ic_world: IcWorld) -> None:
    with _client(ic_world) as client:
        assert client.root_key == ic_world.sim.root_key


def test_mainnet_never_fetches_a_root_key(ic_world: IcWorld) -> None:
    from icp_certificate.certificate import IC_ROOT_KEY

    mainnet_like = Network("ic", ic_world.sim.url, is_mainnet=True)
    with IcClient(mainnet_like, anonymous_identity(), retry=FAST_RETRY) as client:
        assert client.root_key == IC_ROOT_KEY
        with pytest.raises(CertificateError):  # icsim's certificates are not signed by mainnet's key
            client.module_hash(ic_world.canister_id)


def test_stale_certificate_is_rejected(ic_world: IcWorld) -> None:
    from icp_principal import Principal

    capture = _Tamper(ic_world.sim.url, tamper=False)
    with _client(ic_world, wire=capture) as client:
        client.module_hash(ic_world.canister_id)
    raw_id = Principal.from_str(ic_world.canister_id).bytes
    certificate = verify_certificate(capture.last_certificate, raw_id, ic_world.sim.root_key)
    made = certificate.lookup_time()
    with pytest.raises(CertificateError, match="stale"):
        verify_certificate(
            capture.last_certificate, raw_id, ic_world.sim.root_key, now_ns=made + 10 * 60 * 10**9
        )
    with pytest.raises(CertificateError, match="future"):
        verify_certificate(
            capture.last_certificate, raw_id, ic_world.sim.root_key, now_ns=made - 10 * 60 * 10**9
        )


def test_concurrent_calls_from_threads_share_one_client(ic_world: IcWorld) -> None:
    from concurrent.futures import ThreadPoolExecutor

    data = bytes(range(256)) * 64
    with _client(ic_world) as client:
        client.call(ic_world.canister_id, "file_upload_chunk", _chunk_arg(data, 0, "models/t.bin"))
        with ThreadPoolExecutor(4) as pool:
            replies = list(
                pool.map(
                    lambda i: client.call(
                        ic_world.canister_id,
                        "file_upload_chunk",
                        _chunk_arg(data, i * len(data), "models/t.bin"),
                    ),
                    range(1, 9),
                )
            )
    assert all("Ok" in candid.decode(r, [UPLOAD_RESULT])[0] for r in replies)
    assert ic_world.sim.canister("llama_cpp").file_path("models/t.bin").read_bytes() == data * 9


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_reply_slower_than_the_client_timeout_is_settled_once(ic_world: IcWorld) -> None:
    ic_world.sim.faults.delay_replies(1, 1.5, method="file_upload_chunk")
    with _client(ic_world, retry=replace(FAST_RETRY, budget_s=0.5)) as client:
        reply = client.call(ic_world.canister_id, "file_upload_chunk", _chunk_arg(b"g" * 10))
    assert "Ok" in candid.decode(reply, [UPLOAD_RESULT])[0]
    assert _calls(ic_world, "file_upload_chunk") == 1


def test_call_that_never_gets_through_expires_with_a_safe_to_resend_error(ic_world: IcWorld) -> None:
    ic_world.sim.faults.http_errors(10_000, status=503, endpoint="call")
    with _client(ic_world, ingress_expiry_s=1.0) as client, pytest.raises(TransientIcError) as err:
        client.call(ic_world.canister_id, "file_upload_chunk", _chunk_arg(b"h"))
    ic_world.sim.faults.clear()
    assert "expired without executing" in str(err.value) and "HTTP 503" in str(err.value)
    assert _calls(ic_world, "file_upload_chunk") == 0


class _CountingProxy:
    """A TCP relay in front of icsim that counts the connections clients open."""

    def __init__(self, target_port: int) -> None:
        import socket
        import threading

        self.connections = 0
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                inbound, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            outbound = socket.create_connection(self._target)
            for source, sink in ((inbound, outbound), (outbound, inbound)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source, sink) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            sink.close()

    def close(self) -> None:
        self._listener.close()


def test_one_connection_is_reused_for_sequential_requests(ic_world: IcWorld) -> None:
    proxy = _CountingProxy(int(ic_world.sim.url.rsplit(":", 1)[1]))
    identity = load_identity(pem=ic_world.ed25519.path)
    try:
        with IcClient(Network("proxied", proxy.url, is_mainnet=False), identity, retry=FAST_RETRY) as client:
            for offset in range(5):
                client.query(ic_world.canister_id, "health", candid.encode([], []))
                client.call(ic_world.canister_id, "file_upload_chunk", _chunk_arg(b"i" * 10, offset * 10))
                client.module_hash(ic_world.canister_id)
    finally:
        proxy.close()
    assert proxy.connections == 1


def test_query_answers_are_verified_by_node_signature(ic_world: IcWorld) -> None:
    from pipeline.ic.errors import QuerySignatureError

    health = candid.encode([], [])
    with _client(ic_world) as client:
        client.query(ic_world.canister_id, "health", health)  # genuine: accepted
        ic_world.sim.faults.forge_query_signatures(1, method="health")
        with pytest.raises(QuerySignatureError, match="node signature on the answer does not verify"):
            client.query(ic_world.canister_id, "health", health)
        client.query(ic_world.canister_id, "health", health)
    assert ic_world.sim.faults.fired["forge"] == 1


def test_node_keys_are_read_once_per_subnet(ic_world: IcWorld) -> None:
    capture = _Tamper(ic_world.sim.url, tamper=False)
    paths: list[str] = []
    inner = capture.request
    capture.request = lambda method, path, body, *, timeout: (
        paths.append(path)
        or inner(  # type: ignore[method-assign]
            method, path, body, timeout=timeout
        )
    )
    with _client(ic_world, wire=capture) as client:
        for _ in range(3):
            client.query(ic_world.canister_id, "health", candid.encode([], []))
    # one read_state of /subnet (then the root key to check it), then only the queries themselves
    assert [p.rsplit("/", 1)[1] for p in paths] == ["read_state", "status", "query", "query", "query"]
