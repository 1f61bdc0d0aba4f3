"""The llama_cpp canister model behaves like onicai's canister, quirks included (FACTS.md §1a)."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from pipeline.ic.errors import CallRejected
from tests.fixtures_icsim import IcsimCanister as Canister
from tests.icsim import IcSim

UPLOAD = "record { filename : text; chunk : blob; chunksize : nat64; offset : nat64 }"
API_ERROR = "variant { Other : text; StatusCode : nat16 }"
UPLOAD_RESULT = (
    f"variant {{ Ok : record {{ filename : text; filesize : nat64; filesha256 : text }}; Err : {API_ERROR} }}"
)
STATUS_RESULT = f"variant {{ Ok : record {{ status_code : nat16 }}; Err : {API_ERROR} }}"
FILENAME = "record { filename : text }"
DETAILS_RESULT = UPLOAD_RESULT
SIZE_RESULT = (
    "variant { Ok : record { exists : bool; filename : text; filesize : nat64; msg : text }; "
    f"Err : {API_ERROR} }}"
)
DOWNLOAD = "record { filename : text; chunksize : nat64; offset : nat64 }"
DOWNLOAD_RESULT = (
    "variant { Ok : record { chunk : blob; chunksize : nat64; filesize : nat64; offset : nat64; "
    f"done : bool }}; Err : {API_ERROR} }}"
)
REMOVE_RESULT = (
    "variant { Ok : record { exists : bool; removed : bool; filename : text; msg : text }; "
    f"Err : {API_ERROR} }}"
)
RUN_OUTPUT = (
    "record { status_code : nat16; output : text; conversation : text; error : text; "
    "prompt_remaining : text; generated_eog : bool }"
)
RUN_RESULT = f"variant {{ Ok : {RUN_OUTPUT}; Err : {RUN_OUTPUT} }}"
INPUT = "record { args : vec text }"
MAX_TOKENS = "record { max_tokens_update : nat64; max_tokens_query : nat64 }"
DENIED = {"Err": {"Other": "Access Denied"}}


def tiny_gguf(architecture: str) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tiny.gguf"
        writer = gguf.GGUFWriter(path, architecture)
        writer.add_block_count(1)
        writer.add_tensor("token_embd.weight", np.arange(40, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path.read_bytes()


MODEL = tiny_gguf("llama")
OFFSETS = [0, 96, 192]
CHUNKS = [MODEL[0:96], MODEL[96:192], MODEL[192:]]


@pytest.fixture
def llama(icsim_canister) -> Canister:
    return icsim_canister("llama_cpp")


def upload(canister: Canister, filename: str, chunk: bytes, offset: int, chunksize: int | None = None) -> Any:
    value = {"filename": filename, "chunk": chunk, "chunksize": chunksize or len(chunk), "offset": offset}
    return canister.update("file_upload_chunk", [UPLOAD], [value], UPLOAD_RESULT)


def upload_model(canister: Canister, data: bytes = MODEL, filename: str = "m.gguf") -> None:
    for offset in range(0, len(data), 96):
        assert "Ok" in upload(canister, filename, data[offset : offset + 96], offset)


def load(canister: Canister, filename: str = "m.gguf") -> Any:
    return canister.update("load_model", [INPUT], [{"args": ["--model", filename]}], RUN_RESULT)


def details(canister: Canister, filename: str) -> Any:
    return canister.query("uploaded_file_details", [FILENAME], [{"filename": filename}], DETAILS_RESULT)


def test_in_order_upload_reports_the_file_sha(icsim: IcSim, llama: Canister) -> None:
    for chunk, offset in zip(CHUNKS, OFFSETS, strict=True):
        reply = upload(llama, "m.gguf", chunk, offset)
    whole = b"".join(CHUNKS)
    assert reply == {
        "Ok": {"filename": "m.gguf", "filesize": len(whole), "filesha256": hashlib.sha256(whole).hexdigest()}
    }
    assert details(llama, "m.gguf") == reply
    assert icsim.canister("llama_cpp").file_bytes("m.gguf") == whole


def test_offset_zero_truncates_and_restarts_the_sha(icsim: IcSim, llama: Canister) -> None:
    upload(llama, "m.gguf", CHUNKS[0], 0)
    upload(llama, "m.gguf", CHUNKS[1], OFFSETS[1])
    reply = upload(llama, "m.gguf", b"GGUF", 0)
    assert reply["Ok"]["filesha256"] == hashlib.sha256(b"GGUF").hexdigest()
    assert icsim.canister("llama_cpp").file_bytes("m.gguf") == b"GGUF"


def test_out_of_order_chunks_write_right_bytes_but_a_wrong_sha(icsim: IcSim, llama: Canister) -> None:
    order = [0, 2, 1]
    for index in order:
        reply = upload(llama, "m.gguf", CHUNKS[index], OFFSETS[index])
    whole = b"".join(CHUNKS)
    assert icsim.canister("llama_cpp").file_bytes("m.gguf") == whole
    assert reply["Ok"]["filesha256"] == hashlib.sha256(b"".join(CHUNKS[i] for i in order)).hexdigest()
    assert reply["Ok"]["filesize"] == OFFSETS[1] + len(CHUNKS[1])  # offset + len(chunk), not the file size


def test_immediate_repeat_is_ignored_but_an_older_duplicate_corrupts_the_sha(
    icsim: IcSim, llama: Canister
) -> None:
    model = icsim.canister("llama_cpp")
    upload(llama, "m.gguf", CHUNKS[0], 0)
    upload(llama, "m.gguf", CHUNKS[1], OFFSETS[1])
    repeat = upload(llama, "m.gguf", CHUNKS[1], OFFSETS[1])
    assert repeat["Ok"]["filesha256"] == hashlib.sha256(CHUNKS[0] + CHUNKS[1]).hexdigest()
    assert model.counters.bytes_in["m.gguf"] == len(CHUNKS[0]) + len(CHUNKS[1])
    upload(llama, "m.gguf", CHUNKS[2], OFFSETS[2])
    older = upload(llama, "m.gguf", CHUNKS[1], OFFSETS[1])
    whole = b"".join(CHUNKS)
    assert model.file_bytes("m.gguf") == whole
    assert older["Ok"]["filesha256"] != hashlib.sha256(whole).hexdigest()


def test_declared_chunksize_over_2_mib_is_refused(llama: Canister) -> None:
    reply = upload(llama, "m.gguf", b"GGUF", 0, chunksize=2 * 1024 * 1024 + 1)
    assert reply == {"Err": {"Other": "file_upload_chunk_: chunksize 2097153 exceeds limit 2097152"}}


def test_download_and_size_read_the_file_back(llama: Canister) -> None:
    for chunk, offset in zip(CHUNKS, OFFSETS, strict=True):
        upload(llama, "m.gguf", chunk, offset)
    size = llama.query("filesystem_file_size", [FILENAME], [{"filename": "m.gguf"}], SIZE_RESULT)
    assert size["Ok"]["exists"] and size["Ok"]["filesize"] == len(MODEL)
    got, offset, done = b"", 0, False
    while not done:
        arg = {"filename": "m.gguf", "chunksize": 50, "offset": offset}
        reply = llama.query("file_download_chunk", [DOWNLOAD], [arg], DOWNLOAD_RESULT)["Ok"]
        got += reply["chunk"]
        offset += reply["chunksize"]
        done = reply["done"]
    assert got == b"".join(CHUNKS)
    exact = {"filename": "m.gguf", "chunksize": len(MODEL), "offset": 0}
    assert llama.query("file_download_chunk", [DOWNLOAD], [exact], DOWNLOAD_RESULT)["Ok"]["done"]
    missing = {"filename": "none", "chunksize": 10, "offset": 0}
    assert (
        "failed to open"
        in llama.query("file_download_chunk", [DOWNLOAD], [missing], DOWNLOAD_RESULT)["Err"]["Other"]
    )


def test_remove_keeps_the_upload_details(llama: Canister) -> None:
    upload(llama, "m.gguf", CHUNKS[0], 0)
    removed = llama.update("filesystem_remove", [FILENAME], [{"filename": "m.gguf"}], REMOVE_RESULT)
    assert removed["Ok"]["removed"]
    size = llama.query("filesystem_file_size", [FILENAME], [{"filename": "m.gguf"}], SIZE_RESULT)
    assert size == {"Err": {"Other": "File does not exist: m.gguf"}}
    assert details(llama, "m.gguf")["Ok"]["filesize"] == len(CHUNKS[0])
    again = llama.update("filesystem_remove", [FILENAME], [{"filename": "m.gguf"}], REMOVE_RESULT)
    assert again["Ok"]["exists"] is False and again["Ok"]["removed"] is False


def test_upgrade_keeps_files_and_resets_heap(icsim: IcSim, llama: Canister) -> None:
    model = icsim.canister("llama_cpp")
    for chunk, offset in zip(CHUNKS, OFFSETS, strict=True):
        upload(llama, "m.gguf", chunk, offset)
    load = llama.update("load_model", [INPUT], [{"args": ["--model", "m.gguf"]}], RUN_RESULT)
    assert "Ok" in load
    llama.update(
        "set_max_tokens", [MAX_TOKENS], [{"max_tokens_update": 7, "max_tokens_query": 3}], STATUS_RESULT
    )
    before = model.module_hash
    icsim.upgrade(icsim.canister_ids["llama_cpp"])
    assert llama.client.module_hash(llama.canister_id) == model.module_hash != before
    assert llama.query("ready", [], [], STATUS_RESULT) == {"Err": {"Other": "Model not yet loaded"}}
    assert llama.query("get_max_tokens", [], [], MAX_TOKENS) == {
        "max_tokens_update": 0,
        "max_tokens_query": 0,
    }
    assert model.file_bytes("m.gguf") == MODEL
    assert details(llama, "m.gguf")["Ok"]["filesize"] == len(MODEL)  # kept in a file: survives upgrades
    resumed = upload(llama, "m.gguf", CHUNKS[1], OFFSETS[1])
    assert resumed["Ok"]["filesha256"] == hashlib.sha256(CHUNKS[1]).hexdigest()  # sha256(file[N:])


def test_load_model_checks_the_gguf_and_ready_follows(icsim: IcSim, llama: Canister) -> None:
    assert llama.query("ready", [], [], STATUS_RESULT) == {"Err": {"Other": "Model not yet loaded"}}
    upload(llama, "bad.gguf", b"NOPE" + bytes(10), 0)
    assert "invalid GGUF magic" in load(llama, "bad.gguf")["Err"]["error"]
    assert "does not exist" in load(llama, "none.gguf")["Err"]["error"]
    upload(llama, "part.gguf", MODEL[: len(MODEL) - 8], 0)
    assert "not within the file bounds" in load(llama, "part.gguf")["Err"]["error"]
    upload_model(llama, tiny_gguf("bert"), "bert.gguf")
    assert "unknown model architecture: 'bert'" in load(llama, "bert.gguf")["Err"]["error"]
    assert llama.query("ready", [], [], STATUS_RESULT) == {"Err": {"Other": "Model not yet loaded"}}
    upload_model(llama)
    assert load(llama)["Ok"]["status_code"] == 200
    assert llama.query("ready", [], [], STATUS_RESULT) == {"Ok": {"status_code": 200}}


def test_loading_more_than_one_message_may_read_traps(icsim: IcSim, llama: Canister, monkeypatch) -> None:
    monkeypatch.setattr(icsim.canister("llama_cpp"), "max_load_bytes", len(MODEL) - 1)
    upload_model(llama)
    with pytest.raises(CallRejected, match="IC0524"):
        load(llama)


def test_access_control(icsim: IcSim, llama: Canister, icsim_canister) -> None:
    stranger = icsim_canister("llama_cpp", anonymous=True)
    assert upload(stranger, "m.gguf", CHUNKS[0], 0) == DENIED
    assert details(stranger, "m.gguf") == DENIED
    assert stranger.query("check_access", [], [], STATUS_RESULT) == DENIED
    assert stranger.query("health", [], [], STATUS_RESULT) == {"Ok": {"status_code": 200}}
    assert stranger.query("whoami", [], [], "text") == "2vxsx-fae"
    load = stranger.update("load_model", [INPUT], [{"args": ["--model", "m.gguf"]}], RUN_RESULT)
    assert "Err" in load
    assert icsim.canister("llama_cpp").file_bytes("m.gguf") is None
    assert llama.query("check_access", [], [], STATUS_RESULT) == {"Ok": {"status_code": 200}}


def test_chat_consumes_the_prompt_then_generates_until_eog(llama: Canister) -> None:
    upload_model(llama)
    load(llama)
    llama.update(
        "set_max_tokens", [MAX_TOKENS], [{"max_tokens_update": 3, "max_tokens_query": 3}], STATUS_RESULT
    )
    cache = ["--prompt-cache", "prompt.cache"]
    assert "Ok" in llama.update("remove_prompt_cache", [INPUT], [{"args": cache}], RUN_RESULT)
    assert "Ok" in llama.update("new_chat", [INPUT], [{"args": cache}], RUN_RESULT)
    prompt = "what is the capital of france"
    remaining = []
    while True:
        args = [*cache, "--prompt-cache-all", "-p", prompt, "-n", "20"]
        out = llama.update("run_update", [INPUT], [{"args": args}], RUN_RESULT)["Ok"]
        remaining.append(out["prompt_remaining"])
        if not out["prompt_remaining"]:
            break
    assert remaining[0] and remaining[-1] == ""
    answer, calls = "", 0
    while True:
        args = [*cache, "--prompt-cache-all", "-p", "", "-n", "20"]
        out = llama.update("run_update", [INPUT], [{"args": args}], RUN_RESULT)["Ok"]
        answer += out["output"]
        calls += 1
        if out["generated_eog"]:
            break
    assert calls > 1 and answer.split()[:2] == ["icsim", "answers"]
    assert "capital" in answer
