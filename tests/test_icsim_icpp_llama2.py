"""The icpp_llama2 canister model: plain appends, owner-only upload, ready after initialize + mode."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from icp_candid.candid import Types, encode
from icp_identity import Identity

from pipeline.errors import PrepError
from pipeline.ic import candid
from tests.fixtures_icsim import IcsimCanister
from tests.icsim import IcSim
from tests.tinymodels import make_llama2c

API_ERROR = "variant { InvalidId; Other : text; StatusCode : nat16; ZeroAddress }"
STATUS = f"variant {{ Err : {API_ERROR}; Ok : record {{ status_code : nat16 }} }}"
CONFIG = (
    "record { dim : int; hidden_dim : int; n_layers : int; n_heads : int; n_kv_heads : int; "
    "vocab_size : int; seq_len : int }"
)
PROMPT = "record { prompt : text; steps : nat64; temperature : float32; topp : float32; rng_seed : nat64 }"
INFERENCE = f"variant {{ Err : {API_ERROR}; Ok : record {{ inference : text; num_tokens : nat64 }} }}"
OK = {"Ok": {"status_code": 200}}
CHUNK = 100_000


@pytest.fixture
def llama2(icsim_canister) -> IcsimCanister:
    return icsim_canister("icpp_llama2")


@pytest.fixture
def llama2c_files(tmp_path: Path) -> tuple[bytes, bytes]:
    model, tokenizer = make_llama2c(tmp_path)
    return model.read_bytes(), tokenizer.read_bytes()


def upload(canister: IcsimCanister, method: str, data: bytes) -> None:
    for start in range(0, len(data), CHUNK):
        assert canister.update(method, ["blob"], [data[start : start + CHUNK]], STATUS) == OK


def install(canister: IcsimCanister, model: bytes, tokenizer: bytes) -> None:
    """The canister's own uploader sequence."""
    assert canister.query("health", [], [], STATUS) == OK
    assert canister.update("reset_tokenizer", [], [], STATUS) == OK
    upload(canister, "upload_tokenizer_bytes_chunk", tokenizer)
    assert canister.update("reset_model", [], [], STATUS) == OK
    upload(canister, "upload_model_bytes_chunk", model)
    assert canister.update("initialize", [], [], STATUS) == OK


def test_upload_initialize_ready_and_infer(
    icsim: IcSim, llama2: IcsimCanister, llama2c_files, icsim_canister
) -> None:
    model, tokenizer = llama2c_files
    assert "Err" in llama2.query("ready", [], [], STATUS)
    install(llama2, model, tokenizer)
    assert "Other" in llama2.query("ready", [], [], STATUS)["Err"]  # mode not set yet
    assert llama2.update("set_canister_mode", ["text"], ["chat-principal"], STATUS) == OK
    assert llama2.query("ready", [], [], STATUS) == OK
    header = struct.unpack_from("<7i", model)
    config = llama2.query("get_model_config", [], [], CONFIG)
    names = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")
    assert tuple(config[name] for name in names) == header
    assert llama2.update("new_chat", [], [], STATUS) == OK
    prompt = {"prompt": "Once upon a time", "steps": 12, "temperature": 0.0, "topp": 0.9, "rng_seed": 0}
    first = llama2.update("inference", [PROMPT], [prompt], INFERENCE)
    second = llama2.update("inference", [PROMPT], [prompt], INFERENCE)
    assert first == second and first["Ok"]["inference"].startswith("Once upon a time")
    anonymous = icsim_canister("icpp_llama2", anonymous=True)
    raw = anonymous.client.call(anonymous.canister_id, "inference", candid.encode([PROMPT], [prompt]))
    refused = "The Llama2 canister does not allow calling with anonymous principal."
    assert candid.decode(raw, ["variant { Err : text }"]) == [{"Err": refused}]
    state = icsim.canister("icpp_llama2")
    assert bytes(state.model_bytes) == model and state.counters.bytes_in["model"] == len(model)


def test_a_repeated_chunk_silently_duplicates_bytes(
    icsim: IcSim, llama2: IcsimCanister, llama2c_files
) -> None:
    model, tokenizer = llama2c_files
    upload(llama2, "upload_tokenizer_bytes_chunk", tokenizer)
    upload(llama2, "upload_model_bytes_chunk", model[:CHUNK])
    upload(llama2, "upload_model_bytes_chunk", model[:CHUNK])
    upload(llama2, "upload_model_bytes_chunk", model[CHUNK:])
    state = icsim.canister("icpp_llama2")
    assert len(state.model_bytes) == len(model) + CHUNK
    assert state.counters.bytes_in["model"] == len(model) + CHUNK
    assert llama2.update("initialize", [], [], STATUS) == OK  # the canister cannot tell


def test_truncated_model_fails_initialize(llama2: IcsimCanister, llama2c_files) -> None:
    model, tokenizer = llama2c_files
    upload(llama2, "upload_tokenizer_bytes_chunk", tokenizer)
    upload(llama2, "upload_model_bytes_chunk", model[: len(model) // 2])
    reply = llama2.update("initialize", [], [], STATUS)
    assert "its header needs at least" in reply["Err"]["Other"]


def test_only_the_owner_uploads(icsim: IcSim, icsim_canister) -> None:
    stranger = icsim_canister("icpp_llama2", anonymous=True)
    denied = {"Err": {"Other": "Access Denied"}}
    assert stranger.update("upload_model_bytes_chunk", ["blob"], [b"abc"], STATUS) == denied
    assert stranger.update("reset_model", [], [], STATUS) == denied
    assert stranger.query("health", [], [], STATUS) == OK
    assert len(icsim.canister("icpp_llama2").model_bytes) == 0


def test_owner_is_the_installer_not_every_controller(icsim_agent_for) -> None:
    installer, other = Identity(), Identity()
    with IcSim(controllers=[installer.sender().to_str(), other.sender().to_str()]) as sim:
        (reply,) = icsim_agent_for(sim, other).update_raw(
            sim.canister_ids["icpp_llama2"],
            "upload_model_bytes_chunk",
            encode([{"type": Types.Vec(Types.Nat8), "value": b"x"}]),
        )
        assert reply["value"] == {"3456837": {"3382957744": "Access Denied"}}  # Err(Other)
        agent = icsim_agent_for(sim, installer)
        agent.update_raw(
            sim.canister_ids["icpp_llama2"],
            "upload_model_bytes_chunk",
            encode([{"type": Types.Vec(Types.Nat8), "value": b"x"}]),
        )
        assert bytes(sim.canister("icpp_llama2").model_bytes) == b"x"


def test_chat_refusals_are_off_contract(icsim: IcSim, llama2: IcsimCanister, icsim_canister) -> None:
    prompt = {"prompt": "hi", "steps": 3, "temperature": 0.0, "topp": 0.9, "rng_seed": 0}
    wrong_mode = {"Err": {"Other": "Access Denied: canister_mode is not set to 'principal'."}}
    assert llama2.update("inference", [PROMPT], [prompt], INFERENCE) == wrong_mode
    llama2.update("set_canister_mode", ["text"], ["chat-principal"], STATUS)
    # Not initialized: the C++ code replies `variant { Err : nat16 }`, not its declared ApiError.
    raw = llama2.client.call(llama2.canister_id, "new_chat", candid.encode([], []))
    assert candid.decode(raw, ["variant { Err : nat16 }"]) == [{"Err": 500}]
    with pytest.raises(PrepError):
        candid.decode(raw, [STATUS])


def test_upgrade_loses_everything(icsim: IcSim, llama2: IcsimCanister, llama2c_files) -> None:
    model, tokenizer = llama2c_files
    install(llama2, model, tokenizer)
    llama2.update("set_canister_mode", ["text"], ["chat-principal"], STATUS)
    icsim.upgrade(icsim.canister_ids["icpp_llama2"])
    assert "Err" in llama2.query("ready", [], [], STATUS)
    assert len(icsim.canister("icpp_llama2").model_bytes) == 0
    assert set(llama2.query("get_model_config", [], [], CONFIG).values()) == {0}
