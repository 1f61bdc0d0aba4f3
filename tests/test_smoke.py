"""`prep smoke` against icsim: each kind's dialogue, budgets, and clear failures when a model is not there."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import PrepError
from pipeline.ic.client import IcClient
from pipeline.ic.identity import load_identity
from pipeline.ic.network import resolve_network
from pipeline.smoke import SmokeFailed, SmokeRequest, smoke_canister
from pipeline.targets.profile import canisters_dir, load_profile
from tests.fixtures_run import DeployWorld
from tests.hubsim.world import TinyWorld
from tests.icsim import IcSim
from tests.icsim import sim as icsim_sim
from tests.icsim.candid import TEXT, record, variant
from tests.icsim.canisters.base import CallContext, update
from tests.icsim.canisters.icpp_llama2 import API_ERROR, PROMPT, IcppLlama2Canister


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


def test_ic_llm_answers_through_its_declared_dialogue(deploy_world: DeployWorld) -> None:
    target = deploy_world.target_args("ic_llm")
    anonymous = [*target[: target.index("--pem")], "--anonymous"]
    prompt = "Why is the sky blue?"
    done = deploy_world.prep("smoke", "--kind", "ic_llm", "--prompt", prompt, *anonymous)
    assert done.code == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == prompt and lines[1].startswith("icsim llama3.1:8b answers Why is the sky blue?")
    done = deploy_world.prep(
        "smoke", "--kind", "ic_llm", "--prompt", prompt, "--var", "model=qwen3:32b", "--json", *anonymous
    )
    assert done.code == 0, done.stderr
    assert done.result["protocol"] == "v1_chat" and done.result["text"].startswith("icsim qwen3:32b answers")
    assert deploy_world.sim.canister("ic_llm").counters.calls["v1_chat"] == 2
    done = deploy_world.prep(
        "smoke", "--kind", "ic_llm", "--prompt", prompt, "--var", "model=gpt-x", *anonymous
    )
    assert done.code == 1 and "Unsupported model: gpt-x" in done.stderr
    done = deploy_world.prep("smoke", "--kind", "ic_llm", "--prompt", prompt, "--var", "model", *anonymous)
    assert done.code == 2 and "NAME=VALUE" in done.stderr


def test_a_new_kind_is_a_folder_with_its_dialogue(deploy_world: DeployWorld, tmp_path: Path) -> None:
    """The ic_llm canister's older v0_chat, as a kind of its own: a folder, no Python."""
    folder = tmp_path / "ic_llm_v0"
    folder.mkdir()
    (folder / "service.did").write_text((canisters_dir() / "ic_llm" / "service.did").read_text())
    (folder / "profile.toml").write_text(
        """
kind = "ic_llm_v0"
[defaults]
model = "llama3.1:8b"
[smoke]
name = "v0_chat"
continues_prompt = false
[[smoke.calls]]
method = "v0_chat"
args = [{ model = "{model}", messages = [
  { role = "system", content = "Be brief." }, { role = "user", content = "{prompt}" },
] }]
text = ""
"""
    )
    done = deploy_world.prep(
        "smoke", "--kind", str(folder), "--prompt", "Hello", *deploy_world.target_args("ic_llm")
    )
    assert done.code == 0, done.stderr
    assert done.stdout.splitlines()[1].startswith("icsim llama3.1:8b answers Hello")
    assert deploy_world.sim.canister("ic_llm").counters.calls["v0_chat"] == 1


def test_smoke_only_kinds_refuse_uploads(deploy_world: DeployWorld, tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"x" * 10)
    done = deploy_world.prep(
        "upload",
        "--file",
        str(model),
        "--kind",
        "ic_llm",
        "--remote",
        "m",
        *deploy_world.target_args("ic_llm"),
        "--yes",
    )
    assert done.code in (1, 2) and "smoke-only" in done.stderr


def test_no_canister_method_name_in_the_pipeline_code() -> None:
    """Dialogues and uploads come from canisters/<kind>/ data: the Python names no canister method."""
    names = ("new_chat", "run_update", "generate", "inference", "v1_chat", "v0_chat", "load_model")
    pipeline = Path(__file__).resolve().parent.parent / "pipeline"
    found = [
        f"{path.relative_to(pipeline)}: {name}"
        for path in pipeline.rglob("*.py")
        for name in names
        if re.search(rf"[\"']{name}[\"']", path.read_text())
    ]
    assert found == []


class StaleIcppLlama2(IcppLlama2Canister):
    """An icpp_llama2 build from the stale llama2_c/llama2.did: inference replies without num_tokens."""

    @update(PROMPT, returns=(variant(Err=API_ERROR, Ok=record(inference=TEXT)),))
    def inference(self, ctx: CallContext, prompt: dict[str, Any]) -> Any:
        return super().inference(ctx, prompt)


def test_icpp_llama2_without_num_tokens_smokes(
    tiny_world: TinyWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds = tuple(StaleIcppLlama2 if k is IcppLlama2Canister else k for k in icsim_sim.CANISTER_KINDS)
    monkeypatch.setattr(icsim_sim, "CANISTER_KINDS", kinds)
    with IcSim() as sim:
        assert "num_tokens" not in sim.canister("icpp_llama2").candid_service()
        world = DeployWorld(tiny_world, sim, Path(os.environ["PREP_WORKDIR"]))
        done = world.prep(*world.run_args("icpp_llama2"), "--json")
    assert done.code == 0, done.stderr
    assert done.result["smoke"]["passed"] and done.result["smoke"]["tokens"] is None
