"""The emulator speaks the IC HTTP interface as icp-py-core 2.3.1 uses it."""

from __future__ import annotations

import hashlib
import time

import cbor2
import httpx
import pytest
from icp_agent.agent import (
    build_query_response_signable,
    extract_ed25519_pubkey_from_der,
    sign_request,
    verify_ed25519_signature,
)
from icp_candid.candid import Types, decode, encode
from icp_certificate.certificate import Certificate
from icp_core.errors import ReplicaReject, TransportError
from icp_identity import Identity
from icp_principal import Principal
from py_arkworks_bls12381 import GT, G1Point, G2Point

from tests.fixtures_icsim import call_envelope, dev_identity, upload_arg
from tests.icsim import IcSim
from tests.icsim.certify import BLS_DST, ROOT_KEY_DER_PREFIX, STATE_ROOT_DOMAIN, verify
from tests.icsim.hashtree import build, reveal
from tests.icsim.requestid import request_id
from tests.icsim.statustree import RequestStatusTree


def test_status_serves_the_root_key(icsim: IcSim) -> None:
    reply = httpx.get(f"{icsim.url}/api/v2/status")
    assert reply.content[:3] == b"\xd9\xd9\xf7"  # self-describe tag 55799
    status = cbor2.loads(reply.content)
    assert status["root_key"] == icsim.root_key
    assert icsim.root_key.startswith(ROOT_KEY_DER_PREFIX) and len(icsim.root_key) == 133


@pytest.mark.parametrize("kind", ["ed25519", "secp256k1", "p256", "anonymous"])
def test_query_and_update_for_each_identity_kind(icsim: IcSim, icsim_agent, kind: str) -> None:
    identity = Identity(anonymous=True) if kind == "anonymous" else Identity(type=kind)
    agent = icsim_agent(identity)
    canister = icsim.canister_ids["llama_cpp"]
    (whoami,) = agent.query_raw(canister, "whoami", encode([]))
    assert whoami["value"] == identity.sender().to_str()
    # Certified update (icp-py-core checks the BLS certificate); the canister refuses a non-controller.
    (reply,) = agent.update_raw(canister, "file_upload_chunk", upload_arg("a.bin", b"xy", 0))
    assert reply["value"] == {"3456837": {"3382957744": "Access Denied"}}  # Err(Other)
    assert icsim.canister("llama_cpp").file_bytes("a.bin") is None


def test_controller_update_is_certified_and_executes(icsim: IcSim, icsim_agent) -> None:
    agent = icsim_agent()
    canister = icsim.canister_ids["llama_cpp"]
    (reply,) = agent.update_raw(canister, "file_upload_chunk", upload_arg("m.gguf", b"GGUF1234", 0))
    assert list(reply["value"]) == ["17724"]  # Ok
    assert icsim.canister("llama_cpp").file_bytes("m.gguf") == b"GGUF1234"


def test_certificates_verify_with_two_bls_libraries(icsim: IcSim, icsim_agent) -> None:
    agent = icsim_agent()
    canister = icsim.canister_ids["llama_cpp"]
    raw_id = Principal.from_str(canister).bytes
    path = [b"canister", raw_id, b"module_hash"]
    certificate = agent.read_state_raw(canister, [path])
    assert certificate.lookup(path) == icsim.canister("llama_cpp").module_hash
    message = certificate.signed_message()
    assert verify(icsim.root_key, message, certificate.signature)
    signature = G1Point.from_compressed_bytes(certificate.signature)
    public_key = G2Point.from_compressed_bytes(icsim.root_key[len(ROOT_KEY_DER_PREFIX) :])
    hashed = G1Point.hash_to_curve(message, BLS_DST)
    assert GT.pairing(signature, G2Point()) == GT.pairing(hashed, public_key)
    assert not verify(icsim.root_key, STATE_ROOT_DOMAIN + bytes(32), certificate.signature)


def test_only_requested_paths_are_revealed(icsim: IcSim, icsim_agent) -> None:
    agent = icsim_agent()
    canister = icsim.canister_ids["llama_cpp"]
    raw_id = Principal.from_str(canister).bytes
    certificate = agent.read_state_raw(canister, [[b"canister", raw_id, b"module_hash"]])
    assert certificate.lookup([b"time"]) is not None  # time is always there
    assert certificate.lookup([b"canister", raw_id, b"controllers"]) is None
    assert certificate.lookup([b"canister", raw_id, b"metadata", b"candid:service"]) is None


def test_reveal_keeps_the_root_hash() -> None:
    state = {b"a": {b"x": b"1", b"y": b"2"}, b"b": b"3", b"c": {b"z": {b"w": b"4"}}}
    full = build(state)
    for paths in ([[b"a", b"y"]], [[b"c"]], [[b"b"], [b"a", b"x"]], [[b"zz"]]):
        shown = Certificate({"tree": reveal(full, paths).to_cbor()})  # icp-py-core recomputes the digest
        assert shown.root_hash() == full.digest()
    shown = Certificate({"tree": reveal(full, [[b"a", b"y"]]).to_cbor()})
    assert shown.lookup([b"a", b"y"]) == b"2"
    assert shown.lookup([b"a", b"x"]) is None and shown.lookup([b"b"]) is None


def test_controllers_and_candid_metadata(icsim: IcSim, icsim_agent) -> None:
    agent = icsim_agent()
    canister = icsim.canister_ids["llama_cpp"]
    raw_id = Principal.from_str(canister).bytes
    paths = [[b"canister", raw_id, b"controllers"], [b"canister", raw_id, b"metadata", b"candid:service"]]
    certificate = agent.read_state_raw(canister, paths)
    controllers = list(cbor2.loads(certificate.lookup(paths[0])))
    assert controllers == [dev_identity(icsim).sender().bytes]
    service = certificate.lookup(paths[1]).decode()
    assert "file_upload_chunk : (record {" in service and "uploaded_file_details" in service


def test_request_id_matches_icp_py_core(icsim: IcSim) -> None:
    identity = dev_identity(icsim)
    rid, envelope = call_envelope(identity, icsim.canister_ids["llama_cpp"], "health", encode([]))
    assert request_id(cbor2.loads(envelope)["content"]) == rid


def test_resubmitted_envelope_executes_once(icsim: IcSim) -> None:
    identity = dev_identity(icsim)
    canister = icsim.canister_ids["llama_cpp"]
    rid, envelope = call_envelope(identity, canister, "file_upload_chunk", upload_arg("f", b"abc", 0))
    url = f"{icsim.url}/api/v4/canister/{canister}/call"
    first = httpx.post(url, content=envelope, headers={"Content-Type": "application/cbor"})
    second = httpx.post(url, content=envelope, headers={"Content-Type": "application/cbor"})
    v2 = httpx.post(f"{icsim.url}/api/v2/canister/{canister}/call", content=envelope)
    assert (first.status_code, second.status_code, v2.status_code) == (200, 200, 202)
    assert icsim.canister("llama_cpp").counters.calls["file_upload_chunk"] == 1
    for reply in (first, second):
        body = cbor2.loads(reply.content)
        certificate = cbor2.loads(body["certificate"])
        assert body["status"] == "replied"
        assert _lookup(certificate["tree"], [b"request_status", rid, b"status"]) == b"replied"


def _lookup(tree, path):
    tag = tree[0]
    if tag == 1:
        return _lookup(tree[1], path) or _lookup(tree[2], path)
    if tag == 2:
        return _lookup(tree[2], path[1:]) if path and tree[1] == path[0] else None
    if tag == 3:
        return tree[1] if not path else None
    return None


def test_v2_call_is_accepted_then_polled(icsim: IcSim, icsim_agent) -> None:
    identity = dev_identity(icsim)
    canister = icsim.canister_ids["llama_cpp"]
    rid, envelope = call_envelope(identity, canister, "health", encode([]))
    reply = httpx.post(f"{icsim.url}/api/v2/canister/{canister}/call", content=envelope)
    assert reply.status_code == 202
    agent = icsim_agent(identity)
    status, result = agent.poll(canister, rid, verify_certificate=True, initial_delay=0.01)
    assert status == "replied"
    assert decode(result)[0]["value"] == {"17724": {"3475804314": 200}}


@pytest.mark.parametrize(
    ("expiry_offset_s", "needle"), [(-1, "is in the past"), (10 * 60, "more than 5 minutes ahead")]
)
def test_expiry_outside_the_window_is_refused(icsim: IcSim, expiry_offset_s: int, needle: str) -> None:
    identity = dev_identity(icsim)
    canister = icsim.canister_ids["llama_cpp"]
    expiry = time.time_ns() + expiry_offset_s * 10**9
    _, envelope = call_envelope(identity, canister, "health", encode([]), expiry_ns=expiry)
    reply = httpx.post(f"{icsim.url}/api/v4/canister/{canister}/call", content=envelope)
    assert reply.status_code == 400 and needle in reply.text


def test_tampered_signature_and_wrong_sender_are_refused(icsim: IcSim) -> None:
    identity = dev_identity(icsim)
    canister = icsim.canister_ids["llama_cpp"]
    _, envelope = call_envelope(identity, canister, "health", encode([]))
    decoded = cbor2.loads(envelope)
    decoded["sender_sig"] = bytes([decoded["sender_sig"][0] ^ 1]) + decoded["sender_sig"][1:]
    url = f"{icsim.url}/api/v4/canister/{canister}/call"
    reply = httpx.post(url, content=cbor2.dumps(decoded))
    assert reply.status_code == 400 and "Invalid signature" in reply.text
    _, other = call_envelope(Identity(), canister, "health", encode([]))
    decoded = cbor2.loads(envelope)
    decoded["sender_pubkey"] = cbor2.loads(other)["sender_pubkey"]
    reply = httpx.post(url, content=cbor2.dumps(decoded))
    assert reply.status_code == 400 and "does not match the public key" in reply.text
    assert icsim.canister("llama_cpp").counters.calls["health"] == 0


def test_oversize_body_gets_413(icsim: IcSim) -> None:
    identity = dev_identity(icsim)
    canister = icsim.canister_ids["llama_cpp"]
    _, envelope = call_envelope(
        identity, canister, "file_upload_chunk", upload_arg("big", bytes(2_097_152), 0)
    )
    reply = httpx.post(f"{icsim.url}/api/v4/canister/{canister}/call", content=envelope)
    assert reply.status_code == 413
    _, fits = call_envelope(identity, canister, "file_upload_chunk", upload_arg("big", bytes(2_000_000), 0))
    assert httpx.post(f"{icsim.url}/api/v4/canister/{canister}/call", content=fits).status_code == 200


def test_reading_another_senders_request_status_is_forbidden(icsim: IcSim, icsim_agent) -> None:
    canister = icsim.canister_ids["llama_cpp"]
    rid, envelope = call_envelope(dev_identity(icsim), canister, "health", encode([]))
    httpx.post(f"{icsim.url}/api/v4/canister/{canister}/call", content=envelope)
    stranger = icsim_agent(Identity())
    with pytest.raises(TransportError, match="403"):
        stranger.request_status_raw(canister, rid)


def test_unknown_canister_and_method(icsim: IcSim, icsim_agent) -> None:
    agent = icsim_agent()
    missing = "rno2w-sqaaa-aaaaa-aaacq-cai"
    with pytest.raises(ReplicaReject, match="IC0301"):
        agent.query_raw(missing, "health", encode([]))
    with pytest.raises(TransportError, match="400"):
        agent.update_raw(missing, "health", encode([]))
    with pytest.raises(ReplicaReject, match="IC0536"):
        agent.update_raw(icsim.canister_ids["llama_cpp"], "no_such_method", encode([]))


def test_argument_type_mismatch_is_a_decode_trap(icsim: IcSim, icsim_agent) -> None:
    agent = icsim_agent()
    wrong = encode([{"type": Types.Record({"filename": Types.Nat}), "value": {"filename": 3}}])
    with pytest.raises(ReplicaReject, match="IC0503") as caught:
        agent.update_raw(icsim.canister_ids["llama_cpp"], "file_upload_chunk", wrong)
    assert "failed to decode" in str(caught.value)


def test_query_responses_carry_node_signatures(icsim: IcSim, icsim_agent) -> None:
    # icp-py-core's own check (verify_query_signatures=True) cannot pass against any replica with
    # cbor2 6: under the self-describe tag the signatures arrive as a tuple and it wants a list.
    # So the test runs its signature check piece by piece.
    identity = dev_identity(icsim)
    canister = icsim.canister_ids["llama_cpp"]
    content = {
        "request_type": "query",
        "sender": identity.sender().bytes,
        "canister_id": Principal.from_str(canister).bytes,
        "method_name": "health",
        "arg": encode([]),
        "ingress_expiry": time.time_ns() + 60 * 10**9,
    }
    rid, envelope = sign_request(content, identity)
    response = cbor2.loads(
        httpx.post(f"{icsim.url}/api/v3/canister/{canister}/query", content=envelope).content
    )
    (signature,) = response["signatures"]
    subnet = Principal.self_authenticating(icsim.root_key)
    path = [b"subnet", subnet.bytes, b"node", signature["identity"], b"public_key"]
    node_key = icsim_agent().read_state_subnet_raw(subnet.to_str(), [path]).lookup(path)
    reply = {"arg": response["reply"]["arg"]}
    signable = build_query_response_signable("replied", rid, signature["timestamp"], reply=reply)
    public_key = extract_ed25519_pubkey_from_der(node_key)
    assert verify_ed25519_signature(signature["signature"], signable, public_key)
    assert not verify_ed25519_signature(signature["signature"], signable + b"x", public_key)


def test_request_status_received_replied_then_done(icsim_agent_for) -> None:
    with IcSim(block_interval=60.0) as sim:
        canister = sim.canister_ids["llama_cpp"]
        agent = icsim_agent_for(sim)
        rid, envelope = call_envelope(dev_identity(sim), canister, "health", encode([]))
        httpx.post(f"{sim.url}/api/v2/canister/{canister}/call", content=envelope)
        assert agent.request_status_raw(canister, rid)[0] == "received"  # waiting for the next block
        sim.blocks.interval = 0.0
        sim.restart()  # a fresh block clock: the resubmitted envelope runs at once
        assert httpx.post(f"{sim.url}/api/v4/canister/{canister}/call", content=envelope).status_code == 200
        status, certificate = agent.request_status_raw(canister, rid)
        assert status == "replied" and certificate.lookup_reply(rid) is not None
        sim.replica.record(rid).expiry_ns = time.time_ns() - 1  # as if its ingress expiry had passed
        status, certificate = agent.request_status_raw(canister, rid)
        assert status == "done" and certificate.lookup_reply(rid) is None


def test_incremental_status_tree_matches_a_fresh_one() -> None:
    def subtree(index: int):
        return lambda status: build({b"status": status.encode(), b"reply": bytes([index % 256])})

    entries = {hashlib.sha256(i.to_bytes(2, "big")).digest(): ("replied", subtree(i)) for i in range(300)}
    incremental = RequestStatusTree()
    tree = incremental.tree(entries)
    labels = [path[0] for path in Certificate({"tree": tree.to_cbor()}).list_paths()[::2]]
    assert labels == sorted(entries)
    for rid in list(entries)[:10]:
        shown = Certificate({"tree": reveal(tree, [[rid]]).to_cbor()})
        assert shown.root_hash() == tree.digest()
        assert shown.lookup([rid, b"status"]) == b"replied"
    first = next(iter(entries))
    entries[first] = ("done", entries[first][1])
    updated = incremental.tree(entries)
    assert updated.digest() == RequestStatusTree().tree(entries).digest() != tree.digest()


def test_malformed_requests_get_4xx_with_a_reason(icsim: IcSim) -> None:
    canister = icsim.canister_ids["llama_cpp"]
    base = f"{icsim.url}/api/v4/canister/{canister}/call"
    assert httpx.post(base, content=b"not cbor").status_code == 400
    reply = httpx.post(base, content=cbor2.dumps({"content": {"request_type": "call"}}))
    assert reply.status_code == 400 and "missing field" in reply.text
    _, query_envelope = call_envelope(dev_identity(icsim), canister, "health", encode([]))
    reply = httpx.post(f"{icsim.url}/api/v3/canister/{canister}/query", content=query_envelope)
    assert reply.status_code == 400 and "Expected a query request" in reply.text
    other = "rno2w-sqaaa-aaaaa-aaacq-cai"
    reply = httpx.post(f"{icsim.url}/api/v4/canister/{other}/call", content=query_envelope)
    assert reply.status_code == 400 and "does not match effective canister id" in reply.text
    assert httpx.post(f"{icsim.url}/api/v9/canister/{canister}/call", content=b"").status_code == 404
