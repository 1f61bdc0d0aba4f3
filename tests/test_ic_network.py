"""Networks (--network local|ic|URL) and canister names (--canister ID|NAME)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import UsageError
from pipeline.ic.network import LOCAL_DEFAULT_URL, MAINNET_URL, Network, resolve_canister, resolve_network

LOCAL = Network("local", LOCAL_DEFAULT_URL, is_mainnet=False)
MAINNET = Network("ic", MAINNET_URL, is_mainnet=True)
LLAMA_ID = "ryjl3-tyaaa-aaaaa-aaaba-cai"


def test_ic_is_mainnet(tmp_path: Path) -> None:
    assert resolve_network("ic", project_dir=tmp_path) == MAINNET


def test_local_prefers_url_then_dfx_json_bind_then_default(tmp_path: Path) -> None:
    assert resolve_network("local", project_dir=tmp_path) == LOCAL
    (tmp_path / "dfx.json").write_text(json.dumps({"networks": {"local": {"bind": "127.0.0.1:8080"}}}))
    assert resolve_network("local", project_dir=tmp_path).url == "http://127.0.0.1:8080"
    assert (
        resolve_network("local", url="http://127.0.0.1:9/", project_dir=tmp_path).url == "http://127.0.0.1:9"
    )


def test_url_networks(tmp_path: Path) -> None:
    network = resolve_network("http://127.0.0.1:4944/", project_dir=tmp_path)
    assert network == Network("http://127.0.0.1:4944/", "http://127.0.0.1:4944", is_mainnet=False)
    assert resolve_network("https://ic0.app", project_dir=tmp_path).is_mainnet


def test_unknown_network_and_bad_url(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown network 'staging'"):
        resolve_network("staging", project_dir=tmp_path)
    with pytest.raises(UsageError, match="not a replica URL"):
        resolve_network("local", url="127.0.0.1:4943", project_dir=tmp_path)


def test_canister_principal_is_checked(tmp_path: Path) -> None:
    assert resolve_canister(LLAMA_ID.upper(), LOCAL, tmp_path) == LLAMA_ID
    with pytest.raises(UsageError, match="not a valid canister id"):
        resolve_canister("ryjl3-tyaaa-aaaaa-aaaba-caj", LOCAL, tmp_path)


def test_canister_names_from_dfx_files(tmp_path: Path) -> None:
    (tmp_path / "canister_ids.json").write_text(json.dumps({"llm": {"ic": LLAMA_ID}}))
    local_ids = tmp_path / ".dfx" / "local" / "canister_ids.json"
    local_ids.parent.mkdir(parents=True)
    local_ids.write_text(json.dumps({"llm": {"local": "rrkah-fqaaa-aaaaa-aaaaq-cai"}}))
    assert resolve_canister("llm", MAINNET, tmp_path) == LLAMA_ID
    assert resolve_canister("llm", LOCAL, tmp_path) == "rrkah-fqaaa-aaaaa-aaaaq-cai"


def test_unknown_canister_name_lists_what_was_found_and_where(tmp_path: Path) -> None:
    (tmp_path / "canister_ids.json").write_text(
        json.dumps({"llm": {"ic": LLAMA_ID}, "web": {"ic": LLAMA_ID}})
    )
    with pytest.raises(UsageError) as err:
        resolve_canister("llama", MAINNET, tmp_path)
    message = str(err.value)
    assert "unknown canister 'llama'" in message
    assert str(tmp_path / "canister_ids.json") in message
    assert "llm, web" in message
