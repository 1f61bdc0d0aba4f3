"""The interface check by Candid subtyping: every llama_cpp_canister release passes, a genuinely
incompatible interface is refused by name, `prep kinds check`, and real uploads into icsim canisters
that speak older release interfaces (`IcSim(llama_cpp_interface=...)`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pipeline.ic import candid
from pipeline.targets.interface import fit_kind
from pipeline.targets.profile import load_profile
from tests.fixtures_run import DeployWorld, prep_in_process
from tests.hubsim.world import TinyWorld
from tests.icsim import IcSim
from tests.icsim.canisters.llama_cpp_releases import INTERFACES as LLAMA_CPP_INTERFACES
from tests.icsim.canisters.llama_cpp_releases import LlamaCppV014Canister
from tests.llama_cpp_releases import CURRENT, RELEASES


@pytest.mark.parametrize("tags", list(RELEASES), ids=lambda tags: f"{tags[0]}..{tags[-1]}")
def test_every_llama_cpp_release_interface_passes(tags: tuple[str, ...]) -> None:
    fit = fit_kind(load_profile("llama_cpp"), candid.parse_service(RELEASES[tags]))
    assert fit.matches, fit.problems
    expected_absent = {
        "v0.0.1": ("filesystem_file_size", "uploaded_file_details"),
        "v0.1.0": ("filesystem_file_size",),
    }.get(tags[0], ())
    assert fit.absent == expected_absent
    assert all("added in" in note for note in fit.fallbacks)


def test_fallbacks_replace_the_absent_methods() -> None:
    profile = load_profile("llama_cpp")
    fit = fit_kind(profile, candid.parse_service(RELEASES[("v0.0.1",)]))
    fitted = profile.without(set(fit.absent))
    role = fitted.role("model")
    assert role.size is not None and role.size.method == "file_download_chunk"
    assert role.size.value == "filesize" and role.running_sha is None
    assert profile.role("model").size.method == "filesystem_file_size"  # the shipped profile is unchanged


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("file_upload_chunk :", "upload_file_chunk :"), "method file_upload_chunk is missing"),
        (
            ("chunk : vec nat8; chunksize : nat64", "chunk : vec nat8; chunksize : nat32"),
            "file_upload_chunk argument 1, at chunksize: expected nat32, the canister has nat64",
        ),
        (
            ("run_update : (InputRecord)", "run_update : (record { args : vec text; seed : nat })"),
            "run_update argument 1, at seed: field seed : nat is missing",
        ),
        (
            ("type ApiError = variant { Other : text; StatusCode : nat16 };",
             "type ApiError = variant { Other : text; StatusCode : nat16; Busy };"),
            "case Busy is not one of Other, StatusCode",
        ),
        (("ready : () -> (StatusCodeRecordResult) query;", "ready : () -> (StatusCodeRecordResult);"),
         "ready is an update on the canister, prep calls it as a query"),
    ],
)  # fmt: skip
def test_an_incompatible_interface_is_refused_by_name(change: tuple[str, str], problem: str) -> None:
    assert change[0] in CURRENT
    fit = fit_kind(load_profile("llama_cpp"), candid.parse_service(CURRENT.replace(*change)))
    assert not fit.matches
    assert any(problem in p for p in fit.problems), fit.problems


def test_a_mismatch_names_the_known_release_changes() -> None:
    broken = CURRENT.replace("generated_eog : bool;", "generated_eog : text;")
    fit = fit_kind(load_profile("llama_cpp"), candid.parse_service(broken))
    problem = next(p for p in fit.problems if p.startswith("run_update"))
    assert "result 1, at Ok.generated_eog: expected bool, the canister has text" in problem
    assert "known onicai/llama_cpp_canister changes: v0.15.0 added five opt nat64 token counts" in problem


# ---- prep kinds check ---------------------------------------------------------------------------


def write_did(tmp_path: Path, text: str, name: str = "canister.did") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_kinds_check_says_which_kind_fits(tmp_path: Path) -> None:
    did = write_did(
        tmp_path, RELEASES[("v0.1.0", "v0.2.0", "v0.3.0", "v0.3.1", "v0.4.0", "v0.4.2", "v0.5.0")]
    )
    done = prep_in_process("kinds", "check", str(did))
    assert done.code == 0, done.stderr
    assert f"llama_cpp: fits {did}" in done.stdout
    assert (
        "filesystem_file_size is absent: prep calls file_download_chunk instead (added in v0.6.0)"
        in done.stdout
    )
    assert f"gpt2: does not fit {did}" in done.stdout and "(--kind gpt2 lists all)" in done.stdout
    done = prep_in_process("kinds", "check", str(did), "--kind", "llama_cpp", "--json")
    assert done.code == 0
    (fit,) = done.result["kinds"]
    assert fit["kind"] == "llama_cpp" and fit["matches"] and fit["absent"] == ["filesystem_file_size"]


def test_kinds_check_exit_1_says_exactly_why(tmp_path: Path) -> None:
    did = write_did(tmp_path, CURRENT.replace("load_model :", "load :"))
    done = prep_in_process("kinds", "check", str(did), "--kind", "llama_cpp")
    assert done.code == 1
    lines = done.stdout.splitlines()
    assert lines[0] == f"llama_cpp: does not fit {did}" and len(lines) == 2
    missing = "  method load_model is missing (onicai/llama_cpp_canister v0.0.1 to v0.16.4 all have it)"
    assert lines[1] == missing
    done = prep_in_process("kinds", "check", str(did), "--json")
    assert done.code == 1 and not any(k["matches"] for k in done.result["kinds"])


def test_kinds_check_of_the_shipped_dids_and_bad_input(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent / "canisters"
    for kind in ("llama_cpp", "gpt2", "icpp_llama2", "ic_llm"):
        done = prep_in_process("kinds", "check", str(root / kind / "service.did"), "--kind", kind)
        assert done.code == 0, done.stdout + done.stderr
    bad = write_did(tmp_path, "service : { f : (nat) -> (; }")
    done = prep_in_process("kinds", "check", str(bad))
    assert done.code == 2 and "not valid Candid" in done.stderr
    done = prep_in_process("kinds", "check", str(tmp_path / "missing.did"))
    assert done.code == 2 and "cannot read" in done.stderr


def test_kinds_list_names_each_kind() -> None:
    done = prep_in_process("kinds", "list", "--json")
    assert done.code == 0
    rows = {row["kind"]: row for row in done.result["kinds"]}
    assert rows["ic_llm"]["roles"] == [] and rows["ic_llm"]["smoke"] == "v1_chat"
    assert rows["llama_cpp"]["roles"] == ["model"] and rows["llama_cpp"]["smoke"] == "chat"


# ---- older interfaces, live -------------------------------------------------------------------


@pytest.fixture(params=["v0.14", "v0.5"])
def old_llama_cpp(request: pytest.FixtureRequest, tiny_world: TinyWorld) -> DeployWorld:
    """tiny_world plus an icsim whose llama_cpp canister speaks an older release's interface."""
    with IcSim(llama_cpp_interface=request.param) as sim:
        yield DeployWorld(tiny_world, sim, Path(os.environ["PREP_WORKDIR"]))


def test_an_older_release_uploads_loads_and_smokes(old_llama_cpp: DeployWorld) -> None:
    world = old_llama_cpp
    done = world.prep(*world.run_args("llama_cpp"), "--json")
    assert done.code == 0, done.stderr
    result = done.result
    assert result["smoke"]["passed"] and result["smoke"]["text"].startswith(" icsim answers")
    assert result["smoke"]["tokens"] is None  # these releases reply without token counts
    canister = world.sim.canister("llama_cpp")
    assert canister.loaded_model == "models/model.gguf"
    calls = canister.counters.calls
    uses_fallback = "filesystem_file_size" not in canister.methods()
    assert ("file_download_chunk" in calls) and (calls.get("filesystem_file_size", 0) == 0) == uses_fallback
    info = world.prep("canister", "info", *world.target_args("llama_cpp"), "--json")
    (llama,) = [k for k in info.result["kinds"] if k["matches"]]
    assert llama["kind"] == "llama_cpp" and bool(llama["fallbacks"]) == uses_fallback
    # A rerun finds every byte in place (the size comes from the fallback where it must).
    again = world.prep(*world.run_args("llama_cpp"), "--json")
    assert again.code == 0, again.stderr
    stages = {s["stage"]: s["status"] for s in again.result["stages"]}
    assert stages["upload"] == "skipped"


class NeverEndsCanister(LlamaCppV014Canister):
    """A pre-v0.15 canister that never reports end of generation; with `babble`, it also ignores -n."""

    babble = False

    def _generate(self, chat: Any, n_predict: int, per_call: int) -> dict[str, Any]:
        reply = super()._generate(chat, -1 if self.babble else n_predict, per_call)
        if self.babble and not reply["output"]:
            reply["output"] = " more"
        return {**reply, "generated_eog": False}


@pytest.mark.parametrize("babble", [False, True], ids=["stops growing", "keeps growing"])
def test_smoke_without_token_counts_ends_by_text_growth_and_calls(
    tiny_world: TinyWorld, monkeypatch: pytest.MonkeyPatch, babble: bool
) -> None:
    monkeypatch.setattr(NeverEndsCanister, "babble", babble)
    monkeypatch.setitem(LLAMA_CPP_INTERFACES, "never-ends", NeverEndsCanister)
    with IcSim(llama_cpp_interface="never-ends") as sim:
        world = DeployWorld(tiny_world, sim, Path(os.environ["PREP_WORKDIR"]))
        assert world.prep(*world.run_args("llama_cpp")).code == 0
        before = sim.canister("llama_cpp").counters.calls["run_update"]
        prompt = "one two three"
        done = world.prep(
            "smoke", "--kind", "llama_cpp", "--prompt", prompt, "--max-tokens", "3", "--json",
            *world.target_args("llama_cpp"),
        )  # fmt: skip
        assert done.code == 0, done.stderr
        calls = sim.canister("llama_cpp").counters.calls["run_update"] - before
    # One call consumes the prompt. Then: a call adding nothing ends it, or, while text keeps coming,
    # max_tokens (3) calls do, each having added at least one token.
    assert calls == (1 + 3 if babble else 1 + 2)
    assert done.result["tokens"] is None and done.result["text"].startswith(" icsim answers")


def test_upload_refuses_a_renamed_method_before_any_byte(deploy_world: DeployWorld) -> None:
    canister = deploy_world.sim.canister("gpt2")
    done = deploy_world.prep(
        *deploy_world.run_args("llama_cpp")[:2], *deploy_world.target_args("gpt2"), "--yes"
    )
    assert done.code == 1
    assert (
        "does not fit canister kind llama_cpp: method " in done.stderr and "pick --kind gpt2" in done.stderr
    )
    assert sum(canister.counters.bytes_in.values()) == 0
    assert json.loads(json.dumps(done.stderr))  # plain text, no traceback
    assert "Traceback" not in done.stderr
