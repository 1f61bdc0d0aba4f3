"""Each injected fault is observable through the real HTTP interface."""

from __future__ import annotations

import cbor2
import httpx
import pytest
from icp_candid.candid import encode
from icp_core.errors import ReplicaReject

from tests.fixtures_icsim import call_envelope, dev_identity, upload_arg
from tests.icsim import IcSim


def post_call(sim: IcSim, envelope: bytes, version: str = "v4", timeout: float = 10.0) -> httpx.Response:
    url = f"{sim.url}/api/{version}/canister/{sim.canister_ids['llama_cpp']}/call"
    return httpx.post(url, content=envelope, headers={"Content-Type": "application/cbor"}, timeout=timeout)


def upload_envelope(sim: IcSim, chunk: bytes = b"GGUF", offset: int = 0) -> tuple[bytes, bytes]:
    arg = upload_arg("m.gguf", chunk, offset)
    return call_envelope(dev_identity(sim), sim.canister_ids["llama_cpp"], "file_upload_chunk", arg)


def uploads(sim: IcSim) -> int:
    return sim.canister("llama_cpp").counters.calls["file_upload_chunk"]


def test_dropped_reply_executed_once_and_resubmission_answers(icsim: IcSim) -> None:
    icsim.faults.drop_replies(1, method="file_upload_chunk")
    _, envelope = upload_envelope(icsim)
    with pytest.raises(httpx.RemoteProtocolError):
        post_call(icsim, envelope)
    assert uploads(icsim) == 1
    again = post_call(icsim, envelope)
    assert again.status_code == 200 and cbor2.loads(again.content)["status"] == "replied"
    assert uploads(icsim) == 1 and icsim.faults.fired["drop"] == 1


def test_drop_only_hits_the_named_method(icsim: IcSim) -> None:
    icsim.faults.drop_replies(1, method="load_model")
    _, envelope = upload_envelope(icsim)
    assert post_call(icsim, envelope).status_code == 200


def test_http_errors_do_not_execute(icsim: IcSim) -> None:
    icsim.faults.http_errors(2, status=503)
    _, envelope = upload_envelope(icsim)
    assert [post_call(icsim, envelope).status_code for _ in range(3)] == [503, 503, 200]
    assert uploads(icsim) == 1


def test_http_errors_for_one_endpoint(icsim: IcSim, icsim_agent) -> None:
    icsim.faults.http_errors(1, status=500, endpoint="read_state")
    agent = icsim_agent()
    canister = icsim.canister_ids["llama_cpp"]
    assert agent.query_raw(canister, "health", encode([]))
    with pytest.raises(Exception, match="500"):
        agent.read_state_raw(canister, [[b"time"]])
    assert agent.read_state_raw(canister, [[b"time"]]).lookup([b"time"]) is not None


def test_delayed_reply_times_out_the_client_but_executes(icsim: IcSim, icsim_agent) -> None:
    icsim.faults.delay_replies(1, seconds=2.0)
    rid, envelope = upload_envelope(icsim)
    with pytest.raises(httpx.ReadTimeout):
        post_call(icsim, envelope, timeout=0.3)
    status, _ = icsim_agent().request_status_raw(icsim.canister_ids["llama_cpp"], rid)
    assert status == "replied" and uploads(icsim) == 1


def test_trap_on_the_nth_call(icsim: IcSim, icsim_agent) -> None:
    canister = icsim.canister_ids["llama_cpp"]
    icsim.faults.trap_on_call(canister, "file_upload_chunk", 2)
    agent = icsim_agent()
    agent.update_raw(canister, "file_upload_chunk", upload_arg("m.gguf", b"GGUF", 0))
    with pytest.raises(ReplicaReject, match="IC0503"):
        agent.update_raw(canister, "file_upload_chunk", upload_arg("m.gguf", b"MORE", 4))
    assert icsim.canister("llama_cpp").file_bytes("m.gguf") == b"GGUF"
    agent.update_raw(canister, "file_upload_chunk", upload_arg("m.gguf", b"MORE", 4))
    assert icsim.canister("llama_cpp").file_bytes("m.gguf") == b"GGUFMORE"


def test_restart_keeps_stable_state_and_port(icsim: IcSim, icsim_agent) -> None:
    canister = icsim.canister_ids["llama_cpp"]
    rid, envelope = upload_envelope(icsim)
    assert post_call(icsim, envelope).status_code == 200
    url = icsim.url
    icsim.restart()
    assert icsim.url == url
    assert httpx.get(f"{url}/api/v2/status").status_code == 200
    assert icsim.canister("llama_cpp").file_bytes("m.gguf") == b"GGUF"
    status, _ = icsim_agent().request_status_raw(canister, rid)
    assert status == "replied"


def test_restart_loses_in_flight_messages() -> None:
    with IcSim(block_interval=60.0) as sim:
        request_id, envelope = upload_envelope(sim)
        assert post_call(sim, envelope, version="v2").status_code == 202
        assert sim.replica.record(request_id).status == "received"  # waiting for the next block
        sim.restart()
        assert sim.replica.record(request_id) is None
        assert uploads(sim) == 0 and sim.canister("llama_cpp").file_bytes("m.gguf") is None


def test_upgrade_changes_module_hash_in_read_state(icsim: IcSim, icsim_agent) -> None:
    canister = icsim.canister_ids["llama_cpp"]
    raw = icsim.canister("llama_cpp").canister_id
    agent = icsim_agent()
    before = agent.read_state_raw(canister, [[b"canister", raw, b"module_hash"]]).lookup(
        [b"canister", raw, b"module_hash"]
    )
    icsim.upgrade(canister)
    after = agent.read_state_raw(canister, [[b"canister", raw, b"module_hash"]]).lookup(
        [b"canister", raw, b"module_hash"]
    )
    assert before != after


def test_out_of_cycles_refuses_calls_and_queries(icsim: IcSim, icsim_agent) -> None:
    canister = icsim.canister_ids["llama_cpp"]
    icsim.faults.out_of_cycles(canister)
    _, envelope = upload_envelope(icsim)
    reply = post_call(icsim, envelope)
    assert reply.status_code == 400 and "IC0207" in reply.text
    with pytest.raises(ReplicaReject, match="IC0207"):
        icsim_agent().query_raw(canister, "health", encode([]))
    icsim.faults.out_of_cycles(canister, exhausted=False)
    assert post_call(icsim, envelope).status_code == 200 and uploads(icsim) == 1
