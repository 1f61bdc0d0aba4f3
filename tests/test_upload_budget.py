"""`prep upload` checks cycles and heap before the first byte, reports what it spent, and resumes after a
top-up when the canister ran dry mid-upload."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from icp_identity import Identity
from safetensors.numpy import save_file

from pipeline.errors import PrepError
from pipeline.ic import candid
from pipeline.ic.management import canister_status, update_settings
from pipeline.targets.profile import load_profile
from pipeline.upload.budget import estimate_cost, parse_memory_limit
from tests.fixtures_upload import LLAMA_CHUNK, icsim_client, write_gguf
from tests.icsim import IcSim
from tests.test_upload_cli import prep_args, run_prep

HEAP_OVERHEAD = load_profile("llama_cpp").resources.heap_overhead_bytes


def chunk_bytes(sim: IcSim) -> int:
    return sim.canister("llama_cpp").counters.bytes_in["models/model.gguf"]


def test_too_few_cycles_refuses_before_any_byte(tmp_path: Path, prep_env: dict[str, str]) -> None:
    model = write_gguf(tmp_path / "m.gguf", 4 * LLAMA_CHUNK)
    with IcSim(cycles=10_000_000_000) as sim:
        code, events, stderr = run_prep(prep_args(sim, "llama_cpp", model), prep_env)
        assert code == 1, stderr
        assert "need about" in stderr and "above its freezing reserve" in stderr
        assert f"dfx cycles top-up {sim.canister_ids['llama_cpp']}" in stderr and "--ignore-cycles" in stderr
        assert chunk_bytes(sim) == 0 and not [e for e in events if e["event"] == "chunk"]
        assert {u.method for u in sim.updates} == {"canister_status"}


def test_out_of_cycles_mid_upload_stops_and_resumes_after_top_up(
    tmp_path: Path, prep_env: dict[str, str]
) -> None:
    model = write_gguf(tmp_path / "m.gguf", 8 * LLAMA_CHUNK + 777)
    with IcSim(cycles=12_000_000_000) as sim:
        args = prep_args(sim, "llama_cpp", model, "--ignore-cycles")
        code, events, stderr = run_prep(args, prep_env)
        assert code == 1, stderr
        assert "ran out of cycles during the upload" in stderr
        assert f"dfx cycles top-up {sim.canister_ids['llama_cpp']}" in stderr
        budget = next(e for e in events if e["event"] == "budget")
        assert budget["checked"] and budget["ignored"]
        landed = chunk_bytes(sim)
        assert 0 < landed < model.stat().st_size and sim.refused_for_cycles >= 1
        sim.top_up(sim.canister_ids["llama_cpp"], 10**13)
        code, events, stderr = run_prep(args, prep_env)
        assert code == 0, stderr
        assert chunk_bytes(sim) == model.stat().st_size  # no byte executed twice
        offsets = [
            u.offset for u in sim.updates if u.method == "file_upload_chunk" and u.outcome == "replied"
        ]
        assert sorted(offsets) == sorted(set(offsets))
        assert sim.canister("llama_cpp").file_bytes("models/model.gguf") == model.read_bytes()


def test_summary_reports_cycles_spent_beside_an_estimate_within_ten_percent(
    icsim: IcSim, tmp_path: Path, prep_env: dict[str, str]
) -> None:
    model = write_gguf(tmp_path / "m.gguf", 12 * LLAMA_CHUNK + 12_345)
    charged_before = icsim.canister("llama_cpp").system.charged
    code, events, stderr = run_prep(prep_args(icsim, "llama_cpp", model), prep_env)
    assert code == 0, stderr
    cycles = events[-1]["cycles"]
    charged = icsim.canister("llama_cpp").system.charged - charged_before
    assert cycles["spent"] == charged == cycles["before"] - cycles["after"]
    assert abs(cycles["estimated"] - charged) <= 0.10 * charged, (cycles, charged)


def test_heap_over_wasm_memory_limit_is_refused_then_raised_with_auto(
    icsim: IcSim, tmp_path: Path, prep_env: dict[str, str]
) -> None:
    model = write_gguf(tmp_path / "m.gguf", 2 * LLAMA_CHUNK)
    canister = icsim.canister_ids["llama_cpp"]
    with icsim_client(icsim) as client:
        update_settings(client, canister, wasm_memory_limit=200 * 1024**2)
    code, _, stderr = run_prep(prep_args(icsim, "llama_cpp", model), prep_env)
    assert code == 1 and "wasm_memory_limit is 209,715,200: load_model would trap" in stderr
    assert "--wasm-memory-limit auto" in stderr and chunk_bytes(icsim) == 0
    code, events, stderr = run_prep(
        prep_args(icsim, "llama_cpp", model, "--wasm-memory-limit", "auto"), prep_env
    )
    assert code == 0, stderr
    (settings,) = [e for e in events if e["event"] == "settings"]
    needed = model.stat().st_size + HEAP_OVERHEAD
    assert needed < settings["wasm_memory_limit"] <= needed * 1.1 + 64 * 1024**2
    with icsim_client(icsim) as client:
        assert canister_status(client, canister).wasm_memory_limit == settings["wasm_memory_limit"]
    assert icsim.canister("llama_cpp").loaded_model == "models/model.gguf"


def test_wasm_memory_limit_in_bytes_is_set_first(
    icsim: IcSim, tmp_path: Path, prep_env: dict[str, str]
) -> None:
    model = write_gguf(tmp_path / "m.gguf", LLAMA_CHUNK)
    code, _, stderr = run_prep(
        prep_args(icsim, "llama_cpp", model, "--wasm-memory-limit", "3.75GiB"), prep_env
    )
    assert code == 0, stderr
    assert icsim.canister("llama_cpp").system.wasm_memory_limit == 4_026_531_840
    code, _, stderr = run_prep(prep_args(icsim, "llama_cpp", model, "--wasm-memory-limit", "lots"), prep_env)
    assert code != 0 and "--wasm-memory-limit 'lots'" in stderr


def test_not_a_controller_skips_the_check_and_says_so(
    icsim: IcSim, tmp_path: Path, prep_env: dict[str, str]
) -> None:
    pem = tmp_path / "uploader.pem"
    pem.write_text(Identity().to_pem().decode())
    uploader = Identity.from_pem(pem.read_text()).sender()
    gpt2 = icsim.canister_ids["gpt2"]
    with icsim_client(icsim) as client:
        client.call(gpt2, "add_authorized_principal", candid.encode(["principal"], [uploader]))
    weights = tmp_path / "model.safetensors"
    save_file({"transformer.wte.weight": np.zeros((4, 4), dtype=np.float32)}, str(weights))
    args = prep_args(icsim, "gpt2", weights, "--remote", "safetensors", "--no-load")
    args[args.index("--pem") + 1] = str(pem)
    code, events, stderr = run_prep(args, prep_env)
    assert code == 0, stderr
    (budget,) = [e for e in events if e["event"] == "budget"]
    assert not budget["checked"] and "not a controller" in budget["reason"]
    assert events[-1]["cycles"]["spent"] is None


def test_estimate_counts_only_what_is_left_to_send() -> None:
    profile = load_profile("llama_cpp")
    whole = estimate_cost(profile, [10 * LLAMA_CHUNK], 10 * LLAMA_CHUNK, LLAMA_CHUNK)
    half = estimate_cost(profile, [5 * LLAMA_CHUNK], 10 * LLAMA_CHUNK, LLAMA_CHUNK)
    assert half.load == whole.load and 0.45 < half.upload / whole.upload < 0.55
    # FACTS.md §2: a 639 MB upload costs ~1.28 T cycles of ingress per canister.
    real = estimate_cost(profile, [639_000_000], 639_000_000, LLAMA_CHUNK)
    assert 1.28e12 < real.upload < 1.28e12 * 1.05


@pytest.mark.parametrize(("text", "value"), [("4026531840", 4_026_531_840), ("3.75GiB", 4_026_531_840),
                                             ("512MiB", 512 * 1024**2), ("auto", "auto")])  # fmt: skip
def test_memory_limit_option_values(text: str, value: int | str) -> None:
    assert parse_memory_limit(text) == value
    with pytest.raises(PrepError):
        parse_memory_limit("-1")
