"""`prep smoke` against icsim: each kind's dialogue, budgets, and clear failures when a model is not there."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.errors import PrepError
from pipeline.ic.client import IcClient
from pipeline.ic.identity import load_identity
from pipeline.ic.network import resolve_network
from pipeline.smoke import SmokeFailed, SmokeRequest, smoke_canister
from pipeline.targets.profile import canisters_dir, load_profile
from tests.fixtures_run import DeployWorld
from tests.icsim import IcSim


def client_for(sim: IcSim) -> IcClient:
    return IcClient(resolve_network(sim.url), load_identity(pem=sim.dev_identity_pem))


@pytest.mark.parametrize("kind", ["llama_cpp", "gpt2", "icpp_llama2"])
def test_smoke_a_deployed_model_prints_its_answer(deploy_world: DeployWorld, kind: str) -> None:
    assert deploy_world.prep(*deploy_world.run_args(kind)).code == 0
    done = deploy_world.prep(
        "smoke", str(deploy_world.recipe(kind)), *deploy_world.target_args(kind), "--json"
    )
    assert done.code == 0, done.stderr
    answer = done.result
    assert answer["passed"] and answer["text"].strip()
    assert answer["protocol"] == {"llama_cpp": "chat", "gpt2": "generate", "icpp_llama2": "inference"}[kind]


def test_llama_cpp_chat_dialogue_and_token_budget(deploy_world: DeployWorld) -> None:
    assert deploy_world.prep(*deploy_world.run_args("llama_cpp")).code == 0
    canister = deploy_world.sim.canister("llama_cpp")
    before = dict(canister.counters.calls)
    prompt = "one two three four five six seven eight nine"
    done = deploy_world.prep(
        "smoke", "--kind", "llama_cpp", "--prompt", prompt, "--max-tokens", "3",
        *deploy_world.target_args("llama_cpp"),
    )  # fmt: skip
    assert done.code == 0, done.stderr
    # icsim answers "icsim answers <first six prompt words> <digest> ."; a budget of 3 keeps the first three.
    assert done.stdout.strip() == f"{prompt} icsim answers one"
    calls = {m: n - before.get(m, 0) for m, n in canister.counters.calls.items()}
    assert calls["remove_prompt_cache"] == 1 and calls["new_chat"] == 1 and calls["set_max_tokens"] == 1
    # 9 prompt words at 10 per call: one call consumes the prompt, then generation.
    assert calls["run_update"] >= 2


@pytest.mark.parametrize("kind", ["llama_cpp", "icpp_llama2"])
def test_smoke_refuses_a_canister_without_a_model(icsim: IcSim, kind: str) -> None:
    with client_for(icsim) as client, pytest.raises(PrepError, match="is not ready") as caught:
        smoke_canister(client, load_profile(kind), icsim.canister_ids[kind], SmokeRequest("Hello", 5))
    assert "prep upload" in str(caught.value)


def test_smoke_reports_the_canisters_error_answer(icsim: IcSim) -> None:
    with client_for(icsim) as client, pytest.raises(PrepError, match="model or tokenizer not set up"):
        smoke_canister(client, load_profile("gpt2"), icsim.canister_ids["gpt2"], SmokeRequest("Hello", 5))


def test_smoke_fails_when_the_answer_does_not_match(deploy_world: DeployWorld) -> None:
    assert deploy_world.prep(*deploy_world.run_args("llama_cpp")).code == 0
    request = SmokeRequest("Hello there", 5, expect=r"^never this$")
    with client_for(deploy_world.sim) as client, pytest.raises(SmokeFailed, match="does not match") as caught:
        smoke_canister(client, load_profile("llama_cpp"), deploy_world.sim.canister_ids["llama_cpp"], request)
    assert caught.value.answer.text.startswith(" icsim answers Hello there")


def test_smoke_of_the_wrong_kind_names_the_missing_method(deploy_world: DeployWorld) -> None:
    done = deploy_world.prep(
        "smoke", "--kind", "llama_cpp", "--prompt", "Hi", *deploy_world.target_args("gpt2")
    )
    assert done.code == 1
    assert "does not fit canister kind llama_cpp: method new_chat is missing" in done.stderr
    assert "pick --kind gpt2" in done.stderr


def test_a_kind_without_a_smoke_table_says_so(icsim: IcSim, tmp_path: Path) -> None:
    folder = shutil.copytree(canisters_dir() / "icpp_llama2", tmp_path / "my_llama2c")
    profile = folder / "profile.toml"
    profile.write_text(profile.read_text().split("\n[smoke]")[0])
    with client_for(icsim) as client, pytest.raises(PrepError, match="declares no smoke dialogue") as caught:
        smoke_canister(client, load_profile(folder), icsim.canister_ids["icpp_llama2"], SmokeRequest("Hi", 5))
    assert "[smoke]" in str(caught.value)


def test_smoke_needs_a_recipe_or_a_kind(deploy_world: DeployWorld) -> None:
    done = deploy_world.prep("smoke", *deploy_world.target_args("gpt2"))
    assert done.code == 2 and "RECIPE or --kind" in done.stderr


def test_anyone_may_smoke_a_loaded_llama_cpp_model(deploy_world: DeployWorld) -> None:
    assert deploy_world.prep(*deploy_world.run_args("llama_cpp")).code == 0
    target = deploy_world.target_args("llama_cpp")
    anonymous = [*target[: target.index("--pem")], "--anonymous"]
    done = deploy_world.prep("smoke", str(deploy_world.recipe("llama_cpp")), *anonymous, "--json")
    assert done.code == 0, done.stderr
    assert done.result["passed"]
    assert any(e["event"] == "smoke_note" and e["method"] == "set_max_tokens" for e in done.events)
