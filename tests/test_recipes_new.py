"""`prep recipes new`: verdicts from range-read headers on hubsim, the pick rule, the written recipe."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.errors import PrepError
from pipeline.hub.hf import HubClient, HubSettings
from pipeline.pick import verdicts
from pipeline.pick.headers import FIRST_READ
from pipeline.pick.heap import RAISED_WASM_MEMORY_LIMIT, ModelShape, llama_cpp_heap, load_args_for
from pipeline.pick.recipe import NewRecipe, new_recipe
from pipeline.pick.template import PLAIN_PROMPT, SMOKE_QUESTION, render_smoke_prompt
from pipeline.recipes import load_recipe
from tests.fixtures_run import prep_in_process
from tests.hubsim import HubSim
from tests.hubsim.pick_world import (
    BIG_CONVERT_REPO,
    CONVERT_REPO,
    GPT2_REPO,
    LLAMA2C_REPO,
    MAMBA_REPO,
    QWEN3_REPO,
    TINY_CONVERT_REPO,
    TINY_GGUF_REPO,
    TINYLLAMAS_REPO,
    WIDE_REPO,
    add_pick_repos,
)
from tests.hubsim.server import DEFAULT_TOKEN
from tests.icsim import IcSim

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


@pytest.fixture(scope="module")
def pick_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSim]:
    """One hubsim with every repo of tests/hubsim/pick_world.py, for the tests that only read."""
    root = tmp_path_factory.mktemp("pick")
    with HubSim() as sim, pytest.MonkeyPatch.context() as env:
        env.setenv("HF_ENDPOINT", sim.url)
        env.setenv("HF_HOME", str(root / "hf-home"))
        env.delenv("HF_TOKEN", raising=False)
        env.delenv("HF_HUB_OFFLINE", raising=False)
        add_pick_repos(sim, root / "repos")
        yield sim


def new(tmp_path: Path, repo: str, **options: object) -> NewRecipe:
    return new_recipe(repo, recipes_dir=tmp_path / "recipes", **options)  # type: ignore[arg-type]


def verdicts_of(result: NewRecipe) -> dict[str, str]:
    return {c.name: c.verdict for c in result.candidates}


def test_gguf_quantizations_get_their_verdicts_from_range_read_headers(
    pick_hub: HubSim, tmp_path: Path
) -> None:
    pick_hub.requests.clear()
    pick_hub.range_requests.clear()
    result = new(tmp_path, QWEN3_REPO)
    assert verdicts_of(result) == {
        "Qwen3-1.7B-F16.gguf": verdicts.TOO_BIG,
        "Qwen3-1.7B-F32-00001-of-00002.gguf": verdicts.UNUSABLE,
        "Qwen3-1.7B-Q4_K_M.gguf": verdicts.FITS,
        "Qwen3-1.7B-Q5_K_M.gguf": verdicts.FITS,
        "Qwen3-1.7B-Q6_K.gguf": verdicts.FITS,
        "Qwen3-1.7B-Q8_0.gguf": verdicts.TOO_BIG,
    }
    by_name = {c.name: c for c in result.candidates}
    q8 = by_name["Qwen3-1.7B-Q8_0.gguf"]
    assert "IC0524" in q8.detail and q8.size > 1_750_000_000
    assert q8.quant == "Q8_0" and q8.architecture == "qwen3" and q8.context_length == 40960
    assert q8.tensor_types == {"Q8_0": 197, "F32": 57}
    assert by_name["Qwen3-1.7B-Q4_K_M.gguf"].tensor_types == {"Q6_K": 29, "Q4_K": 168, "F32": 57}
    # The largest quantization that fits, by the stated order.
    assert result.choice.name == "Qwen3-1.7B-Q6_K.gguf"
    assert "Q8_0 > Q6_K > Q5_K_M > Q4_K_M" in result.why
    # Headers only: every byte of a model file came by a range request, a few MB per file.
    model_gets = [p for m, p in pick_hub.requests if m == "GET" and p.startswith("/cdn/")]
    ranged = [p for p, _ in pick_hub.range_requests if p.startswith("/cdn/")]
    assert len(model_gets) == len(ranged) == 10
    for candidate in result.candidates:
        if candidate.verdict != verdicts.UNUSABLE:
            assert FIRST_READ < candidate.header_bytes <= 3 * FIRST_READ and candidate.header_requests == 2
    assert result.header_bytes < 25_000_000


def test_the_recipe_pins_the_choice_and_passes_validation(pick_hub: HubSim, tmp_path: Path) -> None:
    result = new(tmp_path, QWEN3_REPO)
    assert result.path == tmp_path / "recipes" / "qwen3-1.7b-q6_k.toml"
    recipe = load_recipe(result.path)
    source = recipe.sources[0]
    listed = pick_hub.repos[QWEN3_REPO].commits[result.commit]["Qwen3-1.7B-Q6_K.gguf"]
    assert source.revision == result.commit  # type: ignore[union-attr]
    assert source.sha256 == {"Qwen3-1.7B-Q6_K.gguf": listed.sha256}  # type: ignore[union-attr]
    assert source.size == {"Qwen3-1.7B-Q6_K.gguf": listed.size}  # type: ignore[union-attr]
    assert recipe.build.kind == "passthrough" and recipe.build.files == {"model": "Qwen3-1.7B-Q6_K.gguf"}
    assert recipe.target.kind == "llama_cpp" and recipe.target.files == {"model": "models/model.gguf"}
    assert recipe.target.load_args[-2:] == ("--ctx-size", "16384")
    # The model's own ChatML template, without a BOS (llama.cpp adds it).
    assert recipe.target.smoke.prompt == (
        f"<|im_start|>user\n{SMOKE_QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert recipe.licence.startswith(
        "apache-2.0 (model card of sim/Qwen3-1.7B-GGUF; base model Qwen/Qwen3-1.7B"
    )
    shown = prep_in_process("recipes", "show", str(result.path), "--json")
    assert shown.code == 0, shown.stderr


def test_wasm_memory_limit_unknown_architecture_and_truncated_files(pick_hub: HubSim, tmp_path: Path) -> None:
    result = new(tmp_path, WIDE_REPO)
    assert verdicts_of(result) == {
        "Wide-1.5B-Q4_0-truncated.gguf": verdicts.UNUSABLE,
        "Wide-1.5B-Q4_K_M.gguf": verdicts.FITS,
        "Wide-1.5B-Q8_0.gguf": verdicts.NEEDS_MEMORY_LIMIT,
        "Wide-1.5B-hostile.gguf": verdicts.UNUSABLE,
        "mmproj-Wide-1.5B-F16.gguf": verdicts.UNKNOWN_ARCHITECTURE,
    }
    by_name = {c.name: c for c in result.candidates}
    q8 = by_name["Wide-1.5B-Q8_0.gguf"]
    assert q8.memory_limit == RAISED_WASM_MEMORY_LIMIT and 3 * 1024**3 < q8.heap <= RAISED_WASM_MEMORY_LIMIT  # type: ignore[operator]
    assert "'clip'" in by_name["mmproj-Wide-1.5B-F16.gguf"].detail
    assert "runs past the end of the file" in by_name["Wide-1.5B-Q4_0-truncated.gguf"].detail
    hostile = by_name["Wide-1.5B-hostile.gguf"]
    assert "not a model header" in hostile.detail and hostile.header_bytes == FIRST_READ
    # A file that fits as is beats a larger one that needs the canister reconfigured...
    assert result.choice.name == "Wide-1.5B-Q4_K_M.gguf"
    assert result.licence.startswith("other: wide-community-licence")
    # ...unless the user picks it, and then the report says what to change first.
    picked = new(tmp_path, WIDE_REPO, pick_file="Wide-1.5B-Q8_0.gguf")
    assert picked.choice.name == "Wide-1.5B-Q8_0.gguf" and picked.why == "--pick Wide-1.5B-Q8_0.gguf"
    assert any(f"--wasm-memory-limit {RAISED_WASM_MEMORY_LIMIT}" in note for note in picked.notes)


def test_pick_refuses_what_cannot_load_and_names_the_candidates(pick_hub: HubSim, tmp_path: Path) -> None:
    with pytest.raises(PrepError, match="IC0524"):
        new(tmp_path, QWEN3_REPO, pick_file="Qwen3-1.7B-Q8_0.gguf")
    with pytest.raises(PrepError, match="not a candidate") as err:
        new(tmp_path, QWEN3_REPO, pick_file="nope.gguf")
    assert "Qwen3-1.7B-Q6_K.gguf" in str(err.value)
    assert not (tmp_path / "recipes").exists()


def test_a_safetensors_only_repo_needs_conversion_at_the_best_type_that_fits(
    pick_hub: HubSim, tmp_path: Path
) -> None:
    result = new(tmp_path, CONVERT_REPO)
    (candidate,) = result.candidates
    assert candidate.verdict == verdicts.NEEDS_CONVERSION and candidate.quant == "Q8_0"
    assert candidate.architecture == "qwen2" and candidate.tensor_types == {"BF16": 338}
    # Q8_0 of 1.54 B parameters: ~1.64 GB, under the 1.75 GB one load may read.
    assert 1_600_000_000 < candidate.load_size < 1_700_000_000  # type: ignore[operator]
    assert "convert to GGUF q8_0" in candidate.detail
    # Only the safetensors header (tens of KB), not the 3 GB of weights.
    assert candidate.header_bytes < 100_000 and candidate.header_requests == 1
    recipe = load_recipe(result.path)
    assert (recipe.build.kind, recipe.build.outtype, recipe.build.quantize) == ("convert", "f16", "q8_0")
    assert recipe.sources[0].files == (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    )
    assert result.prompt.source == "chat template from tokenizer_config.json"


def test_too_big_even_at_the_smallest_conversion_type(pick_hub: HubSim, tmp_path: Path) -> None:
    with pytest.raises(PrepError, match="even as GGUF q4_k_m") as err:
        new(tmp_path, BIG_CONVERT_REPO)
    assert "model-00001-of-00002.safetensors: too big" in str(err.value)


def test_the_heap_estimate_matches_upstreams_measurement() -> None:
    # llama_cpp_canister README: Qwen3-0.6B Q8_0 (0.64 GB) at --ctx-size 16384, q8_0 KV, batch 64: ~1.76 GiB.
    qwen3_0_6b = ModelShape(
        n_layer=28,
        n_head=16,
        n_head_kv=8,
        key_length=128,
        value_length=128,
        n_vocab=151936,
        context_length=40960,
    )
    heap = llama_cpp_heap(640_000_000, qwen3_0_6b)
    assert abs(heap / 1024**3 - 1.76) < 0.1
    assert load_args_for("models/model.gguf", qwen3_0_6b)[-1] == "16384"


def test_architectures_nobody_can_load_are_refused(pick_hub: HubSim, tmp_path: Path) -> None:
    with pytest.raises(PrepError, match="no candidate can be loaded") as err:
        new(tmp_path, MAMBA_REPO)
    assert verdicts.UNKNOWN_ARCHITECTURE in str(err.value) and "MambaForCausalLM" in str(err.value)


def test_other_kinds_judge_their_own_formats(pick_hub: HubSim, tmp_path: Path) -> None:
    llama2c = new(tmp_path, LLAMA2C_REPO, kind="icpp_llama2")
    assert verdicts_of(llama2c) == {
        "optimizer-state.bin": verdicts.UNUSABLE,
        "stories-tiny.bin": verdicts.FITS,
    }
    assert llama2c.choice.header_bytes == 28
    recipe = load_recipe(llama2c.path)
    assert recipe.build.files == {"model": "stories-tiny.bin", "tokenizer": "tokenizer.bin"}
    assert recipe.target.smoke.prompt == PLAIN_PROMPT
    # karpathy/tinyllamas ships no tokenizer: llama2.c's own (32000 tokens) comes as a pinned URL source.
    stories = load_recipe(new(tmp_path, TINYLLAMAS_REPO, kind="icpp_llama2").path)
    assert [type(s).__name__ for s in stories.sources] == ["HubSource", "UrlSource"]
    assert stories.sources[1].sha256 == "50a52ef822ee9e83de5ce9d0be0a025a773d019437f58b5ff9dcafb063ece361"  # type: ignore[union-attr]
    with pytest.raises(PrepError, match="no model files canister kind gpt2 could use"):
        new(tmp_path, LLAMA2C_REPO, kind="gpt2")
    with pytest.raises(PrepError, match="GPT2LMHeadModel"):
        new(tmp_path, TINY_CONVERT_REPO, kind="gpt2")
    gpt2 = new(tmp_path, GPT2_REPO, kind="gpt2")
    assert verdicts_of(gpt2) == {"model.safetensors": verdicts.FITS}
    recipe = load_recipe(gpt2.path)
    assert (recipe.build.kind, recipe.build.dtype) == ("trim_gpt2", "f16")
    assert recipe.sources[0].files == ("model.safetensors", "config.json", "tokenizer.json")


def test_an_existing_recipe_is_never_overwritten_without_force(pick_hub: HubSim, tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    mine = recipes / "mine.toml"
    mine.write_text("# hand-written\n")
    args = ("recipes", "new", TINY_GGUF_REPO, "--name", "mine", "--recipes-dir", str(recipes))
    refused = prep_in_process(*args)
    assert refused.code == 2 and "already exists" in refused.stderr and "--force" in refused.stderr
    assert mine.read_text() == "# hand-written\n"
    forced = prep_in_process(*args, "--force", "--json")
    assert forced.code == 0, forced.stderr
    assert forced.result["choice"] == "tiny-Q8_0.gguf" and forced.result["recipe"] == str(mine)
    assert load_recipe(mine).sources[0].files == ("tiny-Q8_0.gguf",)
    assert [p.name for p in recipes.iterdir()] == ["mine.toml"]  # no temporary file left behind


def test_the_human_report_shows_the_table_and_the_choice(pick_hub: HubSim, tmp_path: Path) -> None:
    done = prep_in_process("recipes", "new", WIDE_REPO, "--recipes-dir", str(tmp_path))
    assert done.code == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("FILE"))
    assert header.split() == ["FILE", "SIZE", "QUANT", "ARCH", "CTX", "READ/REQS", "VERDICT"]
    assert any(line.startswith("Wide-1.5B-Q8_0.gguf") and "needs wasm_memory_limit" in line for line in lines)
    assert any(line.startswith("choice: Wide-1.5B-Q4_K_M.gguf") for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["not-a-repo-id"], "not a Hugging Face repo id"),
        (["sim/missing"], "not found"),
        ([TINY_GGUF_REPO, "--revision", "v9"], "revision 'v9' not found"),
        ([TINY_GGUF_REPO, "--kind", "nope"], "--kind 'nope'"),
        ([TINY_GGUF_REPO, "--name", "Bad Name"], "--name 'Bad Name'"),
    ],
)
def test_wrong_input_is_an_error_not_a_traceback(
    pick_hub: HubSim, tmp_path: Path, args: list[str], message: str
) -> None:
    done = prep_in_process("recipes", "new", *args, "--recipes-dir", str(tmp_path))
    assert done.code in (1, 2) and message in done.stderr and "Traceback" not in done.stderr


def test_chat_templates_are_sandboxed_and_fall_back_to_a_plain_prompt() -> None:
    assert render_smoke_prompt("{{ raise_exception('no user role') }}", "t").text == PLAIN_PROMPT
    escape = "{{ ''.__class__.__mro__[1].__subclasses__() }}{{ messages[0]['content'] }}"
    assert render_smoke_prompt(escape, "t").text == PLAIN_PROMPT
    assert render_smoke_prompt("{{ 'no question here' }}", "t").text == PLAIN_PROMPT
    gemma = (
        "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}{% endfor %}"
    )
    assert render_smoke_prompt(gemma, "t").text == f"<start_of_turn>user\n{SMOKE_QUESTION}"


@pytest.mark.parametrize(
    ("repo", "name", "model_file"),
    [
        (TINY_GGUF_REPO, "tiny-q8_0", "tiny-Q8_0.gguf"),
        (TINY_CONVERT_REPO, "tiny-llama-safetensors-q8_0", None),
    ],
)
def test_the_generated_recipe_runs_into_icsim(
    hubsim: HubSim, icsim: IcSim, tmp_path: Path, repo: str, name: str, model_file: str | None
) -> None:
    add_pick_repos(hubsim, tmp_path / "repos", (repo,))
    recipes = tmp_path / "recipes"
    made = prep_in_process("recipes", "new", repo, "--recipes-dir", str(recipes), "--json")
    assert made.code == 0, made.stderr
    assert made.result["name"] == name
    shown = prep_in_process("recipes", "show", name, "--recipes-dir", str(recipes), "--json")
    assert shown.code == 0, shown.stderr
    target = ["--network", icsim.url, "--canister", icsim.canister_ids["llama_cpp"], "--pem"]
    ran = prep_in_process(
        "run", str(recipes / f"{name}.toml"), *target, str(icsim.dev_identity_pem), "--yes", "--json"
    )
    assert ran.code == 0, ran.stderr
    assert ran.result["smoke"]["passed"]
    uploaded = icsim.canister("llama_cpp").file_bytes("models/model.gguf")
    if model_file is not None:  # passed through as published
        assert uploaded == hubsim.repos[repo].commits[made.result["commit"]][model_file].data
    else:  # converted: the estimate in the verdict was close to what the build made
        (candidate,) = made.result["candidates"]
        assert abs(candidate["load_size"] - len(uploaded)) < 0.05 * len(uploaded)
    toml = tomllib.loads((recipes / f"{name}.toml").read_text())
    assert json.dumps(toml["target"]["load_args"]).count("--ctx-size") == 1


class _IgnoresRange(BaseHTTPRequestHandler):
    """A server that answers every GET with the whole (large) body, whatever the Range header says."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(50_000_000))
        self.end_headers()
        with contextlib.suppress(OSError):
            for _ in range(50):
                self.wfile.write(bytes(1_000_000))

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_range_reads_never_take_more_than_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _IgnoresRange)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        client = HubClient(HubSettings.from_env())
        assert client.read_range("o/r", "m.gguf", "c" * 40, 0, 1000) == bytes(1000)
        with pytest.raises(PrepError, match="did not serve bytes from 1000"):
            client.read_range("o/r", "m.gguf", "c" * 40, 1000, 1000)
    finally:
        server.shutdown()
        server.server_close()


def test_gated_and_offline_repos_fail_with_what_to_do(
    hubsim: HubSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_pick_repos(hubsim, tmp_path / "repos", (TINY_GGUF_REPO,))
    hubsim.repos[TINY_GGUF_REPO].gated = True
    args = ("recipes", "new", TINY_GGUF_REPO, "--recipes-dir", str(tmp_path / "recipes"))
    refused = prep_in_process(*args)
    assert refused.code == 1 and "gated repo" in refused.stderr and "HF_TOKEN" in refused.stderr
    monkeypatch.setenv("HF_TOKEN", DEFAULT_TOKEN)
    allowed = prep_in_process(*args)
    assert allowed.code == 0, allowed.stderr
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = prep_in_process(*args, "--force")
    assert offline.code == 1 and "HF_HUB_OFFLINE" in offline.stderr


def test_revision_judges_that_branch_and_pins_its_commit(pick_hub: HubSim, tmp_path: Path) -> None:
    main_files = pick_hub.repos[TINY_GGUF_REPO].commits[pick_hub.repos[TINY_GGUF_REPO].refs["main"]]
    only_q4 = {"tiny-Q4_0.gguf": main_files["tiny-Q4_0.gguf"].data}
    commit = pick_hub.commit(TINY_GGUF_REPO, only_q4, revision="q4-only")  # type: ignore[arg-type]
    result = new(tmp_path, TINY_GGUF_REPO, revision="q4-only")
    assert result.choice.name == "tiny-Q4_0.gguf" and result.commit == commit
    assert load_recipe(result.path).sources[0].revision == commit  # type: ignore[union-attr]
