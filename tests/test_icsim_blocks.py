"""Block clock: per-block ingress cap, 1000 messages per block, latency before certification."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cbor2
import httpx

from pipeline.ic import candid
from tests.fixtures_icsim import call_envelope, dev_identity, upload_arg
from tests.icsim import IcSim
from tests.icsim.replica import MAX_MESSAGES_PER_BLOCK, RequestRecord


def post(sim: IcSim, envelope: bytes, version: str) -> httpx.Response:
    return httpx.post(
        f"{sim.url}/api/{version}/canister/{sim.canister_ids['llama_cpp']}/call", content=envelope
    )


def test_ingress_cap_spreads_messages_over_blocks() -> None:
    with IcSim(block_interval=0.05, block_ingress_bytes=150_000) as sim:
        identity = dev_identity(sim)
        records = []
        for index in range(4):
            arg = upload_arg("m.gguf", bytes(100_000), index * 100_000)
            rid, envelope = call_envelope(identity, sim.canister_ids["llama_cpp"], "file_upload_chunk", arg)
            assert post(sim, envelope, "v2").status_code == 202
            records.append(sim.replica.record(rid))
        for record in records:
            assert record.finished.wait(10)
        assert [block.messages for block in sim.replica.block_log] == [1, 1, 1, 1]
        assert all(block.ingress_bytes > 100_000 for block in sim.replica.block_log)


def test_at_most_1000_messages_per_block() -> None:
    with IcSim() as sim:
        replica = sim.replica
        records = [RequestRecord(bytes([i % 256, i // 256]), b"", b"", "m", 10, 0) for i in range(1500)]
        replica._queue.extend(records)  # a block's worth of tiny messages, without 1500 HTTP round trips
        with replica._lock:
            first = replica._take_block()
            second = replica._take_block()
        assert (len(first), len(second)) == (MAX_MESSAGES_PER_BLOCK, 500)


def test_latency_holds_back_certification() -> None:
    with IcSim(latency=1.0, sync_call_timeout=0.05) as sim:
        identity = dev_identity(sim)
        rid, envelope = call_envelope(identity, sim.canister_ids["llama_cpp"], "health", b"DIDL\x00\x00")
        accepted = post(sim, envelope, "v4")
        assert accepted.status_code == 202 and cbor2.loads(accepted.content)["status"] == "accepted"
        record = sim.replica.record(rid)
        assert record.finished.wait(10) and record.status == "replied"
        assert record.certified_status(now=record.visible_at - 0.5) == "processing"
        sim.replica.wait(record, timeout=10)
        replied = post(sim, envelope, "v4")
        assert replied.status_code == 200 and cbor2.loads(replied.content)["status"] == "replied"


def test_agent_polls_when_the_sync_call_times_out(icsim_agent_for) -> None:
    with IcSim(latency=0.3, sync_call_timeout=0.05) as sim:
        agent = icsim_agent_for(sim)
        canister = sim.canister_ids["llama_cpp"]
        (reply,) = agent.update_raw(canister, "health", b"DIDL\x00\x00", initial_delay=0.05)
        assert reply["value"] == {"17724": {"3475804314": 200}}


def test_concurrent_calls_each_execute_once(icsim: IcSim, icsim_canister) -> None:
    llama = icsim_canister("llama_cpp")
    upload = "record { filename : text; chunk : blob; chunksize : nat64; offset : nat64 }"
    chunks = [bytes([i]) * 1000 for i in range(40)]

    def send(index: int) -> None:
        value = {"filename": "f", "chunk": chunks[index], "chunksize": 1000, "offset": index * 1000}
        raw = llama.client.call(llama.canister_id, "file_upload_chunk", candid.encode([upload], [value]))
        assert candid.decode(raw)[0]  # a reply, whatever its variant

    send(0)  # offset 0 truncates, so it goes first
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(1, 40)))
    model = icsim.canister("llama_cpp")
    assert model.file_bytes("f") == b"".join(chunks)
    assert model.counters.calls["file_upload_chunk"] == 40
