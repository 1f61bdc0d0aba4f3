"""`prep tune` probes a loaded llama_cpp canister in icsim for the largest max_tokens_update."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.cli.app import main
from pipeline.ic import candid
from pipeline.recipes import load_recipe
from pipeline.tune import _search
from tests.fixtures_upload import icsim_client, write_gguf
from tests.icsim import IcSim

REPO = Path(__file__).resolve().parents[1]


def loaded_canister(sim: IcSim, instructions_per_token: int) -> str:
    canister = sim.canister_ids["llama_cpp"]
    model = sim.canister(canister)
    model.file_path("models/model.gguf").parent.mkdir(parents=True, exist_ok=True)
    write_gguf(model.file_path("models/model.gguf"), 4096)
    with icsim_client(sim) as client:
        load = candid.encode(["record { args : vec text }"], [{"args": ["--model", "models/model.gguf"]}])
        client.call(canister, "load_model", load)
    model.instructions_per_token = instructions_per_token
    return canister


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as done:
        code = int(done.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_tune_converges_and_writes_the_recipe(icsim: IcSim, tmp_path: Path, capsys) -> None:
    canister = loaded_canister(icsim, 1_950_000_000)  # ~ Qwen3-0.6B q8_0 per token: 20 fit in 40 B
    recipe = tmp_path / "qwen3-0.6b.toml"
    shutil.copy(REPO / "recipes" / "qwen3-0.6b.toml", recipe)
    before = recipe.read_text()
    code, out, err = run(
        capsys, "tune", str(recipe), "--network", icsim.url, "--canister", canister,
        "--pem", str(icsim.dev_identity_pem), "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out.splitlines()[-1])
    assert result["max_tokens_update"] == 20 and result["recipe"] == str(recipe)
    assert result["probes"] <= 2 * 13
    assert load_recipe(str(recipe)).target.max_tokens_update == 20
    changed = [line for line in recipe.read_text().splitlines() if line not in before.splitlines()]
    assert changed == ["max_tokens_update = 20"]
    model = icsim.canister(canister)
    assert model.max_tokens["max_tokens_update"] == 20 and "prep-tune.cache" not in model.chats
    traps = [u for u in icsim.updates if u.method == "run_update" and u.outcome == "rejected"]
    assert traps and all(u.instructions > 40_000_000_000 for u in traps)


def test_tune_without_a_recipe_prints_the_value(icsim: IcSim, capsys) -> None:
    canister = loaded_canister(icsim, 300_000_000)
    code, out, err = run(
        capsys, "tune", "--kind", "llama_cpp", "--network", icsim.url, "--canister", canister,
        "--pem", str(icsim.dev_identity_pem),
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith("max_tokens_update = 132 ") and "over the instruction limit" in err


def test_tune_refuses_a_kind_without_the_calls_and_a_model_too_big(icsim: IcSim, capsys) -> None:
    code, _, err = run(capsys, "tune", "--kind", "gpt2", "--network", icsim.url, "--canister",
                       icsim.canister_ids["gpt2"], "--pem", str(icsim.dev_identity_pem))  # fmt: skip
    assert code == 1 and "declares no [tune] probe" in err
    canister = loaded_canister(icsim, 45_000_000_000)
    code, _, err = run(capsys, "tune", "--kind", "llama_cpp", "--network", icsim.url, "--canister", canister,
                       "--pem", str(icsim.dev_identity_pem))  # fmt: skip
    assert code == 1 and "even 1 token per call exceeds the instruction limit" in err


@pytest.mark.parametrize("limit", [0, 1, 2, 3, 7, 8, 9, 100, 255, 256, 257, 1000])
def test_search_finds_the_largest_passing_value(limit: int) -> None:
    tried: list[int] = []

    def fits(n: int) -> bool:
        tried.append(n)
        return n <= limit

    assert _search(fits, 256) == min(limit, 256)
    assert len(tried) <= 2 * 9 + 1
