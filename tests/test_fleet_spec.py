"""FLEET.toml and repeated --canister as one Fleet: defaults at the top, per-canister overrides, and every
error naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import UsageError
from pipeline.fleet.spec import MAX_MEMBERS, Fleet, FleetMember, fleet_of, load_fleet

ID_A = "rrkah-fqaaa-aaaaa-aaaaq-cai"
ID_B = "ryjl3-tyaaa-aaaaa-aaaba-cai"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "FLEET.toml"
    path.write_text(text)
    return path


def test_defaults_at_the_top_apply_to_each_canister_that_does_not_set_its_own(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    path = write(
        tmp_path,
        f"""
network = "ic"
identity = "deployer"
recipe = "qwen2.5-0.5b"
[target]
max_tokens_query = 5

[[canister]]
name = "llm_0"

[[canister]]
id = "{ID_A}"
network = "local"
pem = "keys/other.pem"
recipe = "qwen3-0.6b"
[canister.target]
load_args = ["--model", "models/model.gguf"]
max_tokens_update = 20
""",
    )
    fleet = load_fleet(path)
    assert fleet.path == path
    first, second = fleet.members
    assert first == FleetMember(
        "llm_0", network="ic", identity="deployer", recipe="qwen2.5-0.5b", target={"max_tokens_query": 5}
    )
    assert second.canister == ID_A and second.network == "local" and second.recipe == "qwen3-0.6b"
    assert second.identity is None and second.pem == (tmp_path / "keys" / "other.pem").resolve()
    assert second.target == {
        "max_tokens_query": 5,
        "load_args": ("--model", "models/model.gguf"),
        "max_tokens_update": 20,
    }
    assert fleet.recipes == {"qwen2.5-0.5b", "qwen3-0.6b"}


def test_repeated_canister_options_make_a_fleet_without_a_file() -> None:
    fleet = fleet_of([ID_A, " llm_1 "], None)
    assert fleet == Fleet((FleetMember(ID_A), FleetMember("llm_1")))


@pytest.mark.parametrize(
    ("canisters", "fleet_file", "says"),
    [
        ([], None, "name a canister"),
        ([ID_A, ID_A], None, "listed twice"),
        (["two words"], None, "--canister: 'two words' is not a canister id or name"),
        ([ID_A], Path("FLEET.toml"), "not both"),
    ],
)
def test_canister_options_refused(canisters: list[str], fleet_file: Path | None, says: str) -> None:
    with pytest.raises(UsageError, match=says) as caught:
        fleet_of(canisters, fleet_file)
    assert caught.value.hint


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("", "`canister` must be a list of [[canister]] tables; it is missing"),
        ("canister = []", "lists no canister"),
        ("[[canister]]\nidd = 'x'", "`canister[0]` needs exactly one of `id`"),
        (f"[[canister]]\nid = '{ID_A}'\nname = 'x'", "`canister[0]` needs exactly one of `id`"),
        ("[[canister]]\nid = 7", "`canister[0].id` must be a non-empty string"),
        ("[[canister]]\nid = 'has space'", "`canister[0].id`: 'has space' is not a canister id"),
        (f"[[canister]]\nid = '{ID_A}'\ncolour = 'red'", "unknown key `canister[0].colour`"),
        (f"colour = 'red'\n[[canister]]\nid = '{ID_A}'", "unknown key `colour`"),
        (f"network = 3\n[[canister]]\nid = '{ID_A}'", "`network` must be a non-empty string"),
        (f"[[canister]]\nid = '{ID_A}'\nrecipe = ''", "`canister[0].recipe` must be a non-empty string"),
        (f"[[canister]]\nid = '{ID_A}'\nidentity = 'a'\npem = 'b.pem'", "`canister[0]` sets both"),
        (
            f"[[canister]]\nid = '{ID_A}'\n[canister.target]\nmax_tokens_update = 0",
            "target.max_tokens_update",
        ),
        (
            f"[[canister]]\nid = '{ID_A}'\n[canister.target]\nmax_tokens_query = true",
            "target.max_tokens_query",
        ),
        (
            f"[[canister]]\nid = '{ID_A}'\n[canister.target]\nload_args = [1]",
            "`canister[0].target.load_args`",
        ),
        (
            f"[[canister]]\nid = '{ID_A}'\n[canister.target]\nkind = 'gpt2'",
            "unknown key `canister[0].target.kind`",
        ),
        (f"[[canister]]\nid = '{ID_A}'\ntarget = 3", "`canister[0].target` must be a table"),
        ("canister = 'x'", "`canister` must be a list of [[canister]] tables"),
        (f"[[canister]]\nid = '{ID_A}'\n[[canister]]\nid = '{ID_A}'", f"canister {ID_A} is listed twice"),
        ("[[canister]\nid = 'x'", "not valid TOML"),
    ],
)
def test_every_error_names_the_file_and_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        load_fleet(path)
    assert str(path) in caught.value.message and key in caught.value.message, caught.value.message
    assert caught.value.hint


def test_unreadable_and_oversized_files_are_refused(tmp_path: Path) -> None:
    for path, says in (
        (tmp_path / "missing.toml", "does not exist"),
        (tmp_path, "cannot read fleet file"),
        (tmp_path / "binary.toml", "not UTF-8"),
    ):
        if path.name == "binary.toml":
            path.write_bytes(b"\xff\xfe\x00bad")
        with pytest.raises(UsageError, match=says):
            load_fleet(path)
    huge = write(tmp_path, "# " + "x" * 1_000_001)
    with pytest.raises(UsageError, match="not a fleet file"):
        load_fleet(huge)
    many = write(tmp_path, "".join(f"[[canister]]\nname = 'c{i}'\n" for i in range(MAX_MEMBERS + 1)))
    with pytest.raises(UsageError, match=f"at most {MAX_MEMBERS}"):
        load_fleet(many)
