"""Nothing reaches a canister that its loader would reject: every role's format is checked before the
first byte, for --file and recipes alike; --no-validate is the way around it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipeline.errors import UsageError
from pipeline.targets.profile import known_kinds, load_profile
from tests.fixtures_upload import EngineRun, random_bytes, write_gguf
from tests.icsim import IcSim
from tests.test_upload import kind_files
from tests.test_upload_cli import prep_args, run_prep

KINDS = ["llama_cpp", "gpt2", "icpp_llama2"]
DAMAGE = ["garbage", "empty", "truncated"]


def gguf_with_a_tensor(path: Path) -> Path:
    """A small GGUF whose tensor data a truncation cuts into (write_gguf's padding has no tensors)."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("token_embd.weight", np.arange(64 * 1024, dtype=np.float32).reshape(64, 1024))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def files_for(kind: str, tmp_path: Path) -> tuple[Path | str, list[tuple[str, Path, str]]]:
    if kind == "llama_cpp":
        return kind, [("model", gguf_with_a_tensor(tmp_path / "model.gguf"), "models/model.gguf")]
    return kind_files(kind, tmp_path)


def damaged(path: Path, damage: str, tmp_path: Path) -> Path:
    out = tmp_path / f"{damage}-{path.name}"
    data = path.read_bytes()
    if damage == "garbage":
        out.write_bytes(random_bytes(5_000, seed=7))
    elif damage == "empty":
        out.write_bytes(b"")
    else:
        out.write_bytes(data[: len(data) * 2 // 3])
    return out


def test_every_role_of_every_kind_names_its_format() -> None:
    for kind in known_kinds():
        for role in load_profile(kind).roles:
            assert role.format, f"{kind} role {role.name} has no format"


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("kind", KINDS)
def test_a_file_its_loader_would_reject_is_refused_before_any_byte(
    kind: str, damage: str, upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    target, files = files_for(kind, tmp_path)
    profile = load_profile(target)
    for index, (role, path, remote) in enumerate(files):
        bad = [*files]
        bad[index] = (role, damaged(path, damage, tmp_path), remote)
        with pytest.raises(UsageError) as err:
            upload_run(target, bad)
        assert (
            str(bad[index][1]) in str(err.value)
            and f"{kind} canisters need" in str(err.value)
            and f"as their {role} file" in str(err.value)
        )
        assert err.value.exit_code == 2
        assert "--no-validate" in str(err.value)
        assert profile.role(role).format  # the role's declared format decided it
    calls = icsim.canister(kind).counters.calls
    assert sum(calls.values()) == 0  # not even a query: refused before the network
    assert sum(icsim.canister(kind).counters.bytes_in.values()) == 0


def test_garbage_for_icpp_llama2_exits_2_and_no_validate_sends_it(
    icsim: IcSim, tmp_path: Path, prep_env: dict[str, str]
) -> None:
    garbage = tmp_path / "model.bin"
    garbage.write_bytes(random_bytes(5_000, seed=3))
    args = prep_args(icsim, "icpp_llama2", garbage, "--remote", "model", "--no-load")
    code, _, stderr = run_prep(args, prep_env)
    assert code == 2, stderr
    assert "is not a llama2.c model.bin" in stderr and "Traceback" not in stderr
    canister = icsim.canister("icpp_llama2")
    assert canister.counters.calls["upload_model_bytes_chunk"] == 0
    code, _, stderr = run_prep([*args, "--no-validate"], prep_env)
    assert code == 0, stderr
    assert bytes(canister.model_bytes) == garbage.read_bytes()  # type: ignore[attr-defined]


def test_a_recipe_build_that_is_not_gguf_is_refused_before_any_byte(
    icsim: IcSim, tmp_path: Path, prep_env: dict[str, str]
) -> None:
    from pipeline.manifest import artifact_from_file, write_manifest

    stage_dir = tmp_path / "work" / "smollm2-135m" / "build"
    stage_dir.mkdir(parents=True)
    model = write_gguf(stage_dir / "model.gguf", 3_000)
    model.write_bytes(b"GGUF" + b"\xff" * 2_996)  # a GGUF magic and nothing a loader can read
    write_manifest(
        stage_dir, stage="build", recipe="smollm2-135m", inputs=[], params={}, tools={},
        artifacts=[artifact_from_file("model", model)],
    )  # fmt: skip
    args = [
        sys.executable, "-m", "pipeline", "upload", "smollm2-135m", "--network", icsim.url,
        "--canister", icsim.canister_ids["llama_cpp"], "--pem", str(icsim.dev_identity_pem), "--yes",
    ]  # fmt: skip
    code, _, stderr = run_prep(args, prep_env)
    assert code == 2 and "is not a GGUF model" in stderr, stderr
    assert icsim.canister("llama_cpp").counters.calls["file_upload_chunk"] == 0
