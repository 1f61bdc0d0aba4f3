"""The GPT-2 (candle) canister model: heap appends, stable copies, strict loader, .did drift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.numpy import load_file, save

from pipeline.ic.errors import CallRejected
from tests.fixtures_icsim import IcsimCanister
from tests.icsim import IcSim
from tests.icsim.canisters.gpt2 import expected_tensors
from tests.tinymodels import make_tiny_model

UNIT_RESULT = "variant { Ok; Err : text }"
CHUNK = 50_000


@pytest.fixture
def gpt2(icsim_canister) -> IcsimCanister:
    return icsim_canister("gpt2")


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = make_tiny_model("gpt2", tmp_path_factory.mktemp("gpt2"))
    return {
        "safetensors": (folder / "model.safetensors").read_bytes(),
        "config": (folder / "config.json").read_bytes(),
        "tokenizer": (folder / "tokenizer.json").read_bytes(),
    }


def append(canister: IcsimCanister, buffer: str, data: bytes) -> None:
    for start in range(0, len(data), CHUNK):
        assert canister.update(f"append_{buffer}_bytes", ["blob"], [data[start : start + CHUNK]], []) == []


def length(canister: IcsimCanister, buffer: str) -> int:
    return canister.query(f"{buffer}_bytes_length", [], [], "nat64")


def test_documented_order_sets_up_and_generates(gpt2: IcsimCanister, tiny_gpt2: dict[str, bytes]) -> None:
    append(gpt2, "safetensors", tiny_gpt2["safetensors"])
    assert length(gpt2, "safetensors") == len(tiny_gpt2["safetensors"])
    # The .did says `() -> ()`; the Rust code replies Result<(), String>.
    assert gpt2.update("store_safetensors_bytes_to_stable", [], [], UNIT_RESULT) == {"Ok": None}
    assert length(gpt2, "safetensors") == 0
    assert gpt2.update("load_safetensors_bytes_from_stable", [], [], UNIT_RESULT) == {"Ok": None}
    append(gpt2, "config", tiny_gpt2["config"])
    assert gpt2.update("setup_model", [], [], UNIT_RESULT) == {"Ok": None}
    assert length(gpt2, "safetensors") == 0 and length(gpt2, "config") == 0  # consumed
    append(gpt2, "tokenizer", tiny_gpt2["tokenizer"])
    assert gpt2.update("store_tokenizer_bytes_to_stable", [], [], UNIT_RESULT) == {"Ok": None}
    assert gpt2.update("load_tokenizer_bytes_from_stable", [], [], UNIT_RESULT) == {"Ok": None}
    assert gpt2.update("setup_tokenizer", [], [], UNIT_RESULT) == {"Ok": None}
    reply = gpt2.update(
        "generate", ["text", "nat8", "float64"], ["Hello", 5, 0.0], "variant { Ok : text; Err : text }"
    )
    again = gpt2.update(
        "generate", ["text", "nat8", "float64"], ["Hello", 5, 0.0], "variant { Ok : text; Err : text }"
    )
    assert reply == again and reply["Ok"].startswith("Hello")


def test_duplicated_append_is_caught_only_by_setup_model(
    icsim: IcSim, gpt2: IcsimCanister, tiny_gpt2: dict[str, bytes]
) -> None:
    data = tiny_gpt2["safetensors"]
    append(gpt2, "safetensors", data[:CHUNK])
    append(gpt2, "safetensors", data[:CHUNK])
    append(gpt2, "safetensors", data[CHUNK:])
    assert length(gpt2, "safetensors") == len(data) + CHUNK
    assert icsim.canister("gpt2").counters.bytes_in["safetensors"] == len(data) + CHUNK
    append(gpt2, "config", tiny_gpt2["config"])
    reply = gpt2.update("setup_model", [], [], UNIT_RESULT)
    assert "Err" in reply


def test_missing_tensor_and_bad_n_inner_are_refused(
    gpt2: IcsimCanister, tiny_gpt2: dict[str, bytes], tmp_path: Path
) -> None:
    config = json.loads(tiny_gpt2["config"])
    (tmp_path / "m.safetensors").write_bytes(tiny_gpt2["safetensors"])
    tensors = load_file(tmp_path / "m.safetensors")
    assert set(expected_tensors(config)) <= set(tensors)
    del tensors["transformer.h.0.mlp.c_fc.bias"]
    append(gpt2, "safetensors", save(tensors))
    append(gpt2, "config", tiny_gpt2["config"])
    assert gpt2.update("setup_model", [], [], UNIT_RESULT) == {
        "Err": "cannot find tensor transformer.h.0.mlp.c_fc.bias"
    }
    append(gpt2, "safetensors", tiny_gpt2["safetensors"])
    append(gpt2, "config", json.dumps({**config, "n_inner": 3 * config["n_embd"]}).encode())
    assert "n_inner" in gpt2.update("setup_model", [], [], UNIT_RESULT)["Err"]


def test_upgrade_keeps_stable_copies_only(
    icsim: IcSim, gpt2: IcsimCanister, tiny_gpt2: dict[str, bytes]
) -> None:
    append(gpt2, "safetensors", tiny_gpt2["safetensors"])
    gpt2.update("store_safetensors_bytes_to_stable", [], [], UNIT_RESULT)
    append(gpt2, "config", tiny_gpt2["config"])
    icsim.upgrade(icsim.canister_ids["gpt2"])
    assert length(gpt2, "config") == 0
    assert gpt2.update("load_safetensors_bytes_from_stable", [], [], UNIT_RESULT) == {"Ok": None}
    assert length(gpt2, "safetensors") == len(tiny_gpt2["safetensors"])


def test_authorization(icsim: IcSim, gpt2: IcsimCanister, icsim_canister) -> None:
    stranger = icsim_canister("gpt2", anonymous=True)
    with pytest.raises(CallRejected, match="Unauthorized"):
        stranger.update("append_config_bytes", ["blob"], [b"{}"], [])
    anonymous = "2vxsx-fae"
    assert gpt2.query("is_principal_authorized", ["principal"], [anonymous], "bool") is False
    gpt2.update("add_authorized_principal", ["principal"], [anonymous], [])
    assert gpt2.query("is_principal_authorized", ["principal"], [anonymous], "bool") is True
    assert stranger.update("append_config_bytes", ["blob"], [b"{}"], []) == []
    assert bytes(icsim.canister("gpt2").buffers["config"]) == b"{}"
