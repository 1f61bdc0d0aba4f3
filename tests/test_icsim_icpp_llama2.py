"""The icpp_llama2 canister model: plain appends, owner-only upload, ready after initialize + mode."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

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


def test_upload_initialize_ready_and_infer(icsim: IcSim, llama2: IcsimCanister, llama2c_files) -> None:
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
    unauthorized = {"Err": {"StatusCode": 401}}
    assert stranger.update("upload_model_bytes_chunk", ["blob"], [b"abc"], STATUS) == unauthorized
    assert stranger.update("reset_model", [], [], STATUS) == unauthorized
    assert stranger.query("health", [], [], STATUS) == OK
    assert len(icsim.canister("icpp_llama2").model_bytes) == 0


def test_upgrade_loses_everything(icsim: IcSim, llama2: IcsimCanister, llama2c_files) -> None:
    model, tokenizer = llama2c_files
    install(llama2, model, tokenizer)
    llama2.update("set_canister_mode", ["text"], ["chat-principal"], STATUS)
    icsim.upgrade(icsim.canister_ids["icpp_llama2"])
    assert "Err" in llama2.query("ready", [], [], STATUS)
    assert len(icsim.canister("icpp_llama2").model_bytes) == 0
    assert set(llama2.query("get_model_config", [], [], CONFIG).values()) == {0}
