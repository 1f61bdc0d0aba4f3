"""Fetch with the real huggingface_hub client against HubSim: sources, verification, locks, offline."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from pipeline.errors import PrepError
from pipeline.hub import HubUnreachable, LockMismatch, fetch_recipe, fetch_repo
from pipeline.recipes import load_recipe
from tests.hubsim import HubSim

REPO = "acme/tiny-gguf"
MODEL = b"GGUF" + bytes(range(256)) * 40  # LFS-sized
CONFIG = b'{"arch": "tiny"}\n'
TOKENIZER = b"tok" * 100


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def recipe_text(url: str) -> str:
    return f"""
description = "tiny test model"
licence = "MIT"

[[source]]
repo = "{REPO}"
revision = "main"
files = ["model.gguf", "*.json"]

[[source]]
url = "{url}"
sha256 = "{sha256(TOKENIZER)}"
size = {len(TOKENIZER)}

[build]
kind = "passthrough"
files = {{ model = "model.gguf", tokenizer = "tokenizer.bin" }}

[target]
kind = "icpp_llama2"
files = {{ model = "model.bin", tokenizer = "tokenizer.bin" }}

[target.smoke]
prompt = "Once"
max_tokens = 4
expect = "."
"""


@pytest.fixture
def tiny(hubsim: HubSim, tmp_path: Path) -> Path:
    """A repo with an LFS model and a regular config, a plain tokenizer URL, and a recipe using both."""
    hubsim.add_repo(REPO, {"model.gguf": MODEL, "config.json": CONFIG})
    url = hubsim.add_plain_file("tokenizer.bin", TOKENIZER)
    path = tmp_path / "project" / "recipes" / "tiny.toml"
    path.parent.mkdir(parents=True)
    path.write_text(recipe_text(url))
    return path


def blobs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "hf-home" / "hub").glob("models--*/blobs/*"))


def test_fetch_recipe_hub_and_url_sources(tiny: Path, hubsim: HubSim, tmp_path: Path) -> None:
    events: list[dict] = []
    result = fetch_recipe(load_recipe(tiny), progress=False, on_event=events.append)
    assert set(result.files) == {"model.gguf", "config.json", "tokenizer.bin"}
    model = result.files["model.gguf"]
    assert model.path.read_bytes() == MODEL
    assert model.sha256 == sha256(MODEL)
    assert model.commit == hubsim.repos[REPO].refs["main"]
    assert model.status == "downloaded"
    assert str(model.path).startswith(str(tmp_path / "hf-home" / "hub"))
    assert result.files["tokenizer.bin"].path.read_bytes() == TOKENIZER
    assert str(result.files["tokenizer.bin"].path).startswith(str(tmp_path / "work"))
    assert [e["name"] for e in events] == ["config.json", "model.gguf", "tokenizer.bin"]

    lock_text = tiny.with_name("tiny.lock.json").read_text()
    assert result.lock_path == tiny.with_name("tiny.lock.json")
    assert lock_text.endswith("}\n")
    lock = json.loads(lock_text)
    assert lock_text == json.dumps(lock, sort_keys=True, indent=2) + "\n"
    hub_entry, url_entry = lock["sources"]
    assert hub_entry["commit"] == model.commit
    assert hub_entry["files"]["model.gguf"] == {"sha256": sha256(MODEL), "size": len(MODEL)}
    assert hub_entry["files"]["config.json"] == {"sha256": sha256(CONFIG), "size": len(CONFIG)}
    assert url_entry["files"]["tokenizer.bin"]["sha256"] == sha256(TOKENIZER)

    downloads_before = len(hubsim.downloads())
    again = fetch_recipe(load_recipe(tiny), progress=False)
    assert {f.status for f in again.files.values()} == {"cached"}
    assert len(hubsim.downloads()) == downloads_before
    assert tiny.with_name("tiny.lock.json").read_text() == lock_text


def test_tree_paging_and_patterns(hubsim: HubSim) -> None:
    hubsim.page_size = 3
    files = {f"shard-{i:02d}.json": f'{{"i": {i}}}'.encode() for i in range(8)}
    hubsim.add_repo("acme/many", {**files, "nested/deep/weights.safetensors": MODEL})
    result = fetch_repo("acme/many", ["shard-0[0-5].json", "nested/*/weights.safetensors"], progress=False)
    assert sorted(result.files) == sorted(
        [*(f"shard-{i:02d}.json" for i in range(6)), "nested/deep/weights.safetensors"]
    )
    assert any("cursor=" in p for _, p in hubsim.requests)


def test_adhoc_fetch_writes_lock_into_workspace(hubsim: HubSim, tmp_path: Path) -> None:
    commit = hubsim.add_repo(REPO, {"model.gguf": MODEL, "config.json": CONFIG})
    result = fetch_repo(REPO, ["config.json"], progress=False)
    assert result.lock_path == tmp_path / "work" / "hf--acme--tiny-gguf" / "hf--acme--tiny-gguf.lock.json"
    lock = json.loads(result.lock_path.read_text())
    assert lock["sources"][0]["commit"] == commit
    assert list(result.files) == ["config.json"]


def test_revision_by_tag_and_commit(hubsim: HubSim) -> None:
    first = hubsim.add_repo(REPO, {"config.json": b"{}"})
    hubsim.commit(REPO, {"config.json": CONFIG}, revision="v2")
    assert (
        fetch_repo(REPO, ["config.json"], "v2", progress=False).files["config.json"].path.read_bytes()
        == CONFIG
    )
    old = fetch_repo(REPO, ["config.json"], first, progress=False).files["config.json"]
    assert old.path.read_bytes() == b"{}"
    assert old.commit == first


def test_corrupted_lfs_download_rejected_and_not_cached(tiny: Path, hubsim: HubSim, tmp_path: Path) -> None:
    hubsim.corrupt(REPO, "model.gguf")
    with pytest.raises(PrepError) as err:
        fetch_recipe(load_recipe(tiny), progress=False)
    message = str(err.value)
    assert "model.gguf" in message
    assert sha256(MODEL) in message
    assert sha256(bytes(b ^ 0x5A for b in MODEL)) in message
    snapshot = tmp_path / "hf-home" / "hub" / "models--acme--tiny-gguf" / "snapshots"
    assert not list(snapshot.glob("*/model.gguf"))
    assert all(p.read_bytes() != bytes(b ^ 0x5A for b in MODEL) for p in blobs(tmp_path))

    hubsim.corrupt(REPO, "model.gguf", enabled=False)
    cdn_gets = len(hubsim.downloads("/cdn/"))
    result = fetch_recipe(load_recipe(tiny), progress=False)
    assert result.files["model.gguf"].status == "downloaded"
    assert result.files["model.gguf"].path.read_bytes() == MODEL
    assert len(hubsim.downloads("/cdn/")) == cdn_gets + 1


def test_corrupted_regular_file_rejected_by_git_blob_id(hubsim: HubSim) -> None:
    hubsim.add_repo(REPO, {"config.json": CONFIG})
    hubsim.corrupt(REPO, "config.json")
    with pytest.raises(
        PrepError, match=r"config.json: downloaded content does not match the Hub's git blob id"
    ):
        fetch_repo(REPO, ["config.json"], progress=False)
    hubsim.corrupt(REPO, "config.json", enabled=False)
    assert fetch_repo(REPO, ["config.json"], progress=False).files["config.json"].path.read_bytes() == CONFIG


def test_recipe_pin_checked(hubsim: HubSim, tmp_path: Path) -> None:
    hubsim.add_repo(REPO, {"model.gguf": MODEL, "config.json": CONFIG})
    url = hubsim.add_plain_file("tokenizer.bin", TOKENIZER)
    path = tmp_path / "recipes" / "pinned.toml"
    path.parent.mkdir()
    text = recipe_text(url).replace(
        'files = ["model.gguf", "*.json"]\n',
        f'files = ["model.gguf", "*.json"]\nsha256 = {{ "config.json" = "{"0" * 64}" }}\n',
    )
    path.write_text(text)
    with pytest.raises(PrepError) as err:
        fetch_recipe(load_recipe(path), progress=False)
    assert "config.json" in str(err.value)
    assert "0" * 64 in str(err.value)
    assert sha256(CONFIG) in str(err.value)

    path.write_text(
        text.replace(
            f'"config.json" = "{"0" * 64}"',
            f'"model.gguf" = "{"1" * 64}", "config.json" = "{sha256(CONFIG)}"',
        )
    )
    with pytest.raises(
        PrepError, match=r"model.gguf: the Hub's sha256 is [0-9a-f]{64}, the recipe pins 1{64}"
    ):
        fetch_recipe(load_recipe(path), progress=False)
    assert not hubsim.downloads("/cdn/")


def test_locked_refuses_drift(tiny: Path, hubsim: HubSim) -> None:
    with pytest.raises(LockMismatch, match="no lock file"):
        fetch_recipe(load_recipe(tiny), locked=True, progress=False)
    first = fetch_recipe(load_recipe(tiny), progress=False)
    assert fetch_recipe(load_recipe(tiny), locked=True, progress=False).files.keys() == first.files.keys()

    old_commit = first.files["model.gguf"].commit
    new_commit = hubsim.commit(REPO, {"model.gguf": MODEL[::-1], "config.json": CONFIG})
    with pytest.raises(LockMismatch) as err:
        fetch_recipe(load_recipe(tiny), locked=True, progress=False)
    assert old_commit in str(err.value) and new_commit in str(err.value)

    lock_path = tiny.with_name("tiny.lock.json")
    lock = json.loads(lock_path.read_text())
    lock["sources"][0]["commit"] = new_commit
    lock_path.write_text(json.dumps(lock))
    with pytest.raises(LockMismatch) as err:
        fetch_recipe(load_recipe(tiny), locked=True, progress=False)
    assert "model.gguf" in str(err.value)
    assert sha256(MODEL) in str(err.value) and sha256(MODEL[::-1]) in str(err.value)

    hubsim.commit(REPO, {"model.gguf": MODEL[::-1], "config.json": CONFIG, "extra.json": b"{}"})
    lock["sources"][0]["commit"] = hubsim.repos[REPO].refs["main"]
    lock_path.write_text(json.dumps(lock))
    with pytest.raises(LockMismatch, match=r"differ from the lock \(new: extra.json; missing: none\)"):
        fetch_recipe(load_recipe(tiny), locked=True, progress=False)

    updated = fetch_recipe(load_recipe(tiny), progress=False)
    assert updated.files["model.gguf"].sha256 == sha256(MODEL[::-1])
    assert fetch_recipe(load_recipe(tiny), locked=True, progress=False).files.keys() == updated.files.keys()


def test_offline_from_cache_at_locked_commit(
    tiny: Path, hubsim: HubSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched = fetch_recipe(load_recipe(tiny), progress=False)
    hubsim.stop()
    for offline_flag in (None, "1"):
        if offline_flag:
            monkeypatch.setenv("HF_HUB_OFFLINE", offline_flag)
        result = fetch_recipe(load_recipe(tiny), locked=True, progress=False)
        assert result.offline
        assert {n: f.sha256 for n, f in result.files.items()} == {
            n: f.sha256 for n, f in fetched.files.items()
        }
        assert {f.status for f in result.files.values()} == {"cached"}


def test_hub_outage_falls_back_to_locked_cache(tiny: Path, hubsim: HubSim) -> None:
    fetch_recipe(load_recipe(tiny), progress=False)
    hubsim.outage_status = 503
    result = fetch_recipe(load_recipe(tiny), progress=False)
    assert result.offline
    assert result.files["model.gguf"].path.read_bytes() == MODEL
    with pytest.raises(HubUnreachable, match="unavailable"):
        fetch_repo("acme/other", ["x.json"], progress=False)


def test_damaged_cache_entry_is_downloaded_again(tiny: Path, hubsim: HubSim) -> None:
    first = fetch_recipe(load_recipe(tiny), progress=False).files["model.gguf"]
    first.path.write_bytes(bytes(len(MODEL)))
    again = fetch_recipe(load_recipe(tiny), progress=False).files["model.gguf"]
    assert again.status == "downloaded"
    assert again.path.read_bytes() == MODEL


def test_unreachable_hub_without_lock_fails_clearly(hubsim: HubSim, monkeypatch: pytest.MonkeyPatch) -> None:
    hubsim.stop()
    with pytest.raises(HubUnreachable, match="cannot reach the Hub") as err:
        fetch_repo(REPO, ["config.json"], progress=False)
    assert "nothing is locked" in str(err.value)


def test_url_download_resumes_with_range(tiny: Path, hubsim: HubSim) -> None:
    hubsim.truncate_plain_file("tokenizer.bin", after=100, times=2)
    result = fetch_recipe(load_recipe(tiny), progress=False)
    assert result.files["tokenizer.bin"].path.read_bytes() == TOKENIZER
    assert ("/files/tokenizer.bin", "bytes=100-") in hubsim.range_requests
    assert not list(result.files["tokenizer.bin"].path.parent.glob("*.part"))


def test_url_sha_mismatch_leaves_nothing(tiny: Path, hubsim: HubSim) -> None:
    hubsim.add_plain_file("tokenizer.bin", TOKENIZER[::-1])
    with pytest.raises(PrepError, match="sha256 mismatch for tokenizer.bin") as err:
        fetch_recipe(load_recipe(tiny), progress=False)
    assert sha256(TOKENIZER) in str(err.value) and sha256(TOKENIZER[::-1]) in str(err.value)
    work = Path(os.environ["PREP_WORKDIR"])
    assert not [p for p in work.rglob("tokenizer.bin*") if p.is_file()]


def test_gated_repo_needs_token(hubsim: HubSim, monkeypatch: pytest.MonkeyPatch) -> None:
    hubsim.add_repo("acme/gated", {"config.json": CONFIG}, gated=True)
    with pytest.raises(PrepError, match=r"acme/gated is a gated repo .*HF_TOKEN is not set") as err:
        fetch_repo("acme/gated", ["config.json"], progress=False)
    assert "HF_TOKEN" in str(err.value)
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(PrepError, match="with the token in HF_TOKEN"):
        fetch_repo("acme/gated", ["config.json"], progress=False)
    monkeypatch.setenv("HF_TOKEN", "hf_hubsim_token")
    assert (
        fetch_repo("acme/gated", ["config.json"], progress=False).files["config.json"].path.read_bytes()
        == CONFIG
    )


@pytest.mark.parametrize(
    ("repo", "patterns", "revision", "expected"),
    [
        ("acme/nope", ["config.json"], "main", "repo acme/nope not found"),
        (REPO, ["missing.bin"], "main", "'missing.bin' matches no file in acme/tiny-gguf@main"),
        (REPO, ["config.json"], "v9", "revision 'v9' not found in acme/tiny-gguf"),
    ],
)
def test_bad_inputs_name_the_problem(
    hubsim: HubSim, repo: str, patterns: list[str], revision: str, expected: str
) -> None:
    hubsim.add_repo(REPO, {"config.json": CONFIG})
    with pytest.raises(PrepError) as err:
        fetch_repo(repo, patterns, revision, progress=False)
    assert expected in str(err.value)


def test_no_progress_bar_when_stderr_is_not_a_terminal(tiny: Path, hubsim: HubSim, capfd) -> None:
    # Logs and CI capture stderr: a bar there is a wall of carriage returns. Lines saying what was
    # verified stay.
    fetch_recipe(load_recipe(tiny), progress=True)
    err = capfd.readouterr().err
    assert "tokenizer.bin: downloaded, verified" in err
    assert "\r" not in err and "B/s" not in err
