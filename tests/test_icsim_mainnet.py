"""icsim as a small mainnet: subnets with delegated certificates, the management canister, cycles,
instruction and heap limits, and the hooks exactly-once tests read."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from icp_principal import Principal

from pipeline.ic import candid
from pipeline.ic.certificate import verify_certificate
from pipeline.ic.errors import CallRejected, CertificateError, PermanentIcError
from pipeline.ic.management import canister_status, update_settings
from tests.fixtures_icsim import call_envelope, dev_identity, upload_arg
from tests.fixtures_upload import icsim_client, write_gguf
from tests.icsim import IcSim
from tests.icsim.principal import from_text
from tests.icsim.replica import RequestRecord
from tests.icsim.subnet import subnet_range
from tests.icsim.system import INGRESS_BYTE_FEE, INGRESS_MESSAGE_FEE, UPDATE_EXECUTION_FEE

UPLOAD = "record { filename : text; chunk : blob; chunksize : nat64; offset : nat64 }"
UPLOAD_REPLY = (
    "variant { Ok : record { filename : text; filesize : nat64; filesha256 : text }; Err : reserved }"
)
INPUT = "record { args : vec text }"
MAX_TOKENS = "record { max_tokens_update : nat64; max_tokens_query : nat64 }"


@pytest.fixture(scope="module")
def mainnet() -> IcSim:
    with IcSim(subnets=3, canisters_per_subnet=2) as sim:
        yield sim


def on_subnet(sim: IcSim, index: int) -> list[str]:
    subnet = sim.subnet_principal(index)
    return [h.principal for h in sim.hosted if h.subnet == subnet]


def test_canisters_live_in_their_subnets_ranges(mainnet: IcSim) -> None:
    assert [len(on_subnet(mainnet, i)) for i in range(3)] == [5, 2, 2]  # one of each kind + 1 more llama_cpp
    for index in range(3):
        low, high = subnet_range(index)
        assert all(low <= from_text(p) <= high for p in on_subnet(mainnet, index))
    assert mainnet.canister_ids["llama_cpp"] == "rrkah-fqaaa-aaaaa-aaaaq-cai"  # as with one subnet


def test_icp_py_core_verifies_a_delegated_certificate(mainnet: IcSim, icsim_agent_for) -> None:
    canister = on_subnet(mainnet, 2)[1]
    agent = icsim_agent_for(mainnet)
    path = [b"canister", Principal.from_str(canister).bytes, b"module_hash"]
    certificate = agent.read_state_raw(canister, [path])  # verify_certificate=True: chain, ranges, time
    assert certificate.delegation is not None
    assert bytes(certificate.delegation["subnet_id"]) == from_text(mainnet.subnet_of(canister))
    assert certificate.lookup(path) == mainnet.canister(canister).module_hash
    # An update through icp-py-core's own call path: its reply certificate is delegated too.
    reply = agent.update_raw(canister, "file_upload_chunk", upload_arg("f", b"abc", 0))
    assert reply[0]["value"]["17724"]["2059296061"] == 3  # Ok.filesize
    # The same certificate is no proof for a canister of another subnet.
    other = Principal.from_str(on_subnet(mainnet, 1)[0]).bytes
    with pytest.raises(Exception, match="CertificateNotAuthorized"):
        certificate.assert_certificate_valid(other)


@pytest.mark.parametrize("encoding", ["flat", "sharded"])
def test_prep_client_calls_a_canister_on_a_delegated_subnet(encoding: str) -> None:
    with IcSim(subnets=2, range_encoding=encoding) as sim:
        canister = next(h.principal for h in sim.hosted if h.subnet == sim.subnet_principal(1))
        with icsim_client(sim) as client:
            arg = candid.encode([UPLOAD], [{"filename": "f", "chunk": b"abc", "chunksize": 3, "offset": 0}])
            (reply,) = candid.decode(client.call(canister, "file_upload_chunk", arg), [UPLOAD_REPLY])
            assert reply["Ok"]["filesize"] == 3
            assert client.subnet_of(canister) == sim.subnet_principal(1)
            assert client.subnet_of(sim.canister_ids["gpt2"]) == sim.subnet_principal(0)
        assert sim.canister(canister).file_bytes("f") == b"abc"


def test_delegated_certificate_is_refused_for_a_canister_outside_its_ranges(mainnet: IcSim) -> None:
    canister, elsewhere = on_subnet(mainnet, 1)[0], on_subnet(mainnet, 2)[0]
    raw = httpx.get(f"{mainnet.url}/api/v2/status")  # warm the server; the certificate comes next
    assert raw.status_code == 200
    certificate = mainnet.topology.for_canister(from_text(canister)).certificate([], from_text(canister))
    verify_certificate(certificate, from_text(canister), mainnet.root_key)
    with pytest.raises(CertificateError, match="does not cover this canister"):
        verify_certificate(certificate, from_text(elsewhere), mainnet.root_key)


def test_subnet_read_state_answers_per_subnet(mainnet: IcSim, icsim_agent_for) -> None:
    agent = icsim_agent_for(mainnet)
    node_keys = set()
    for index in range(3):
        subnet = mainnet.subnet_principal(index)
        sid = Principal.from_str(subnet).bytes
        certificate = agent.read_state_subnet_raw(subnet, [[b"subnet", sid, b"public_key"]])
        assert certificate.lookup([b"subnet", sid, b"public_key"]) == mainnet.subnets[index].key.der
        node = mainnet.subnets[index].node_key
        node_path = [b"subnet", sid, b"node", node.node_id, b"public_key"]
        node_keys.add(agent.read_state_subnet_raw(subnet, [node_path]).lookup(node_path))
    assert len(node_keys) == 3
    missing = Principal(b"no such subnet").to_str()
    assert httpx.post(f"{mainnet.url}/api/v3/subnet/{missing}/read_state", content=b"").status_code == 404


def test_queries_are_signed_by_a_node_of_the_canisters_subnet(mainnet: IcSim) -> None:
    import cbor2
    from icp_candid.candid import encode

    canister = on_subnet(mainnet, 2)[0]
    identity = dev_identity(mainnet)
    content = {
        "request_type": "query", "sender": identity.sender().bytes,
        "canister_id": Principal.from_str(canister).bytes, "method_name": "health", "arg": encode([]),
        "ingress_expiry": time.time_ns() + 60 * 10**9,
    }  # fmt: skip
    from icp_agent.agent import sign_request

    _, envelope = sign_request(content, identity)
    answer = cbor2.loads(
        httpx.post(f"{mainnet.url}/api/v3/canister/{canister}/query", content=envelope).content
    )
    assert answer["signatures"][0]["identity"] == mainnet.subnets[2].node_key.node_id


def test_canister_status_and_update_settings(mainnet: IcSim) -> None:
    canister = on_subnet(mainnet, 1)[1]
    with icsim_client(mainnet) as client:
        status = canister_status(client, canister)
        model = mainnet.canister(canister)
        assert status.status == "running" and status.module_hash == model.module_hash.hex()
        assert status.controllers == (mainnet.dev_principal,)
        assert status.cycles == model.system.cycles and status.memory_size == model.memory_size()
        assert status.freezing_threshold == 2_592_000 and status.wasm_memory_limit == 3 * 1024**3
        assert status.idle_cycles_burned_per_day > 0 and 0 < status.freezing_reserve < status.cycles
        update_settings(client, canister, wasm_memory_limit=4_026_531_840, freezing_threshold=86_400)
        status = canister_status(client, canister)
        assert (status.wasm_memory_limit, status.freezing_threshold) == (4_026_531_840, 86_400)


def test_management_calls_need_a_controller_and_the_right_effective_canister(
    mainnet: IcSim, tmp_path: Path
) -> None:
    from icp_identity import Identity

    stranger = tmp_path / "stranger.pem"
    stranger.write_text(Identity().to_pem().decode())
    canister = on_subnet(mainnet, 2)[1]
    with icsim_client(mainnet, stranger) as client, pytest.raises(CallRejected, match="IC0512"):
        canister_status(client, canister)
    with icsim_client(mainnet) as client:
        arg = candid.encode(
            ["record { canister_id : principal }"], [{"canister_id": Principal.from_str(canister)}]
        )
        with pytest.raises(PermanentIcError, match="does not match effective canister id"):
            client.call("aaaaa-aa", "canister_status", arg, effective_canister_id=on_subnet(mainnet, 2)[0])


def test_ingress_and_execution_are_charged_and_logged(icsim: IcSim) -> None:
    canister = icsim.canister_ids["llama_cpp"]
    model = icsim.canister(canister)
    before = model.system.cycles
    arg = upload_arg("models/x.gguf", b"x" * 1000, 0)
    with icsim_client(icsim) as client:
        client.call(canister, "file_upload_chunk", arg)
    (logged,) = [u for u in icsim.updates if u.method == "file_upload_chunk"]
    assert (logged.canister, logged.arg_size, logged.offset, logged.outcome) == (
        canister,
        len(arg),
        0,
        "replied",
    )
    ingress = INGRESS_MESSAGE_FEE + INGRESS_BYTE_FEE * (len(arg) + len("file_upload_chunk"))
    assert before - model.system.cycles == ingress + UPDATE_EXECUTION_FEE + logged.instructions
    assert logged.instructions > 20 * 1000


def test_out_of_cycles_refuses_until_top_up(tmp_path: Path) -> None:
    with IcSim(cycles=4_200_000_000) as sim:
        canister = sim.canister_ids["llama_cpp"]
        reserve = sim.canister(canister).system.freezing_reserve(sim.canister(canister).memory_size())
        assert 2_000_000_000 < reserve < 3_000_000_000  # 30 days of idle burn for ~8 MiB
        chunk = upload_arg("models/x.gguf", b"y" * 500_000, 0)  # ~1 B cycles of ingress
        with icsim_client(sim) as client:
            client.call(canister, "file_upload_chunk", chunk)
            with pytest.raises(PermanentIcError, match="IC0207"):
                client.call(canister, "file_upload_chunk", chunk)
            assert sim.refused_for_cycles == 1
            sim.top_up(canister, 10**12)
            client.call(canister, "file_upload_chunk", chunk)
        assert sim.canister(canister).counters.bytes_in["models/x.gguf"] == 1_000_000


def test_run_update_traps_past_the_instruction_limit(icsim: IcSim, tmp_path: Path) -> None:
    canister = icsim.canister_ids["llama_cpp"]
    model = icsim.canister(canister)
    model.file_path("models/model.gguf").parent.mkdir(parents=True, exist_ok=True)
    write_gguf(model.file_path("models/model.gguf"), 10_000)
    model.instructions_per_token = 2_000_000_000  # a model the size of Qwen3-0.6B
    prompt = " ".join(f"w{i}" for i in range(40))
    run_args = {"args": ["--prompt-cache", "p.cache", "-p", prompt, "-n", "5"]}
    with icsim_client(icsim) as client:
        client.call(
            canister, "load_model", candid.encode([INPUT], [{"args": ["--model", "models/model.gguf"]}])
        )
        for tokens, fits in ((19, True), (20, False)):
            limits = {"max_tokens_update": tokens, "max_tokens_query": tokens}
            client.call(canister, "set_max_tokens", candid.encode([MAX_TOKENS], [limits]))
            client.call(
                canister, "new_chat", candid.encode([INPUT], [{"args": ["--prompt-cache", "p.cache"]}])
            )
            if fits:
                client.call(canister, "run_update", candid.encode([INPUT], [run_args]))
            else:
                with pytest.raises(CallRejected, match="IC0522.*instructions"):
                    client.call(canister, "run_update", candid.encode([INPUT], [run_args]))
    assert model.chats["p.cache"].decoded == 0  # the trapped call changed nothing


def test_load_model_traps_when_the_heap_passes_wasm_memory_limit(icsim: IcSim) -> None:
    canister = icsim.canister_ids["llama_cpp"]
    model = icsim.canister(canister)
    model.file_path("models/model.gguf").parent.mkdir(parents=True, exist_ok=True)
    write_gguf(model.file_path("models/model.gguf"), 50_000_000)
    load = candid.encode([INPUT], [{"args": ["--model", "models/model.gguf"]}])
    with icsim_client(icsim) as client:
        update_settings(client, canister, wasm_memory_limit=300 * 1024**2)
        with pytest.raises(CallRejected, match="IC0502.*heap out of bounds"):
            client.call(canister, "load_model", load)
        update_settings(client, canister, wasm_memory_limit=400 * 1024**2)
        client.call(canister, "load_model", load)
    (loaded,) = [u for u in icsim.updates if u.method == "load_model" and u.outcome == "replied"]
    assert loaded.instructions >= 20 * 50_000_000
    assert model.memory_size() > 2 * 50_000_000 + 256 * 1024**2  # the file, and the model in the heap


def test_buffer_counters_reset_with_their_buffer(icsim: IcSim) -> None:
    gpt2, llama = icsim.canister("gpt2"), icsim.canister("llama_cpp")
    with icsim_client(icsim) as client:
        for _ in range(2):
            client.call(icsim.canister_ids["gpt2"], "append_config_bytes", candid.encode(["blob"], [b"abcd"]))
        client.call(icsim.canister_ids["llama_cpp"], "file_upload_chunk", upload_arg("m", b"12345", 0))
        client.call(icsim.canister_ids["llama_cpp"], "file_upload_chunk", upload_arg("m", b"678", 5))
        assert (gpt2.counters.buffer_bytes["config"], llama.counters.buffer_bytes["m"]) == (8, 8)
        client.call(icsim.canister_ids["gpt2"], "clear_config_bytes", candid.encode([], []))
        client.call(icsim.canister_ids["llama_cpp"], "file_upload_chunk", upload_arg("m", b"ab", 0))
        assert (gpt2.counters.buffer_bytes["config"], llama.counters.buffer_bytes["m"]) == (0, 2)
        client.call(icsim.canister_ids["gpt2"], "append_config_bytes", candid.encode(["blob"], [b"abcd"]))
    icsim.upgrade("gpt2")
    icsim.upgrade("llama_cpp")
    assert (gpt2.counters.buffer_bytes["config"], llama.counters.buffer_bytes["m"]) == (0, 2)
    assert gpt2.counters.bytes_in["config"] == 12  # the running total keeps counting


def test_background_load_takes_its_share_of_every_block() -> None:
    with IcSim(background_load=0.5, block_ingress_bytes=1_000_000) as sim:
        replica = sim.replica
        small = [RequestRecord(bytes([i % 256, i // 256]), b"", b"", "m", 10, 0) for i in range(600)]
        big = [RequestRecord(bytes([9, i]), b"", b"", "m", 200_000, 0) for i in range(4)]
        with replica._lock:
            replica._queue.extend(small)
            assert len(replica._take_block()) == 500
            replica._queue.clear()
            replica._queue.extend(big)
            assert len(replica._take_block()) == 2  # 500 kB of the 1 MB block are other users'
            replica._queue.clear()


def test_each_subnet_has_its_own_block_clock(icsim_agent_for) -> None:
    with IcSim(subnets=2, block_interval=60.0) as sim:
        first = next(h.principal for h in sim.hosted if h.subnet == sim.subnet_principal(1))
        rid, envelope = call_envelope(dev_identity(sim), first, "health", candid.encode([], []))
        httpx.post(f"{sim.url}/api/v2/canister/{first}/call", content=envelope)
        assert sim.topology.for_canister(from_text(first)).record(rid).status == "received"
        assert sim.replica.record(rid) is None  # subnet 0 never saw it
