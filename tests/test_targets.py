"""Canister kind profiles: loading, validation, call templates, and a new kind as a folder with no code."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from pipeline.errors import PrepError
from pipeline.ic import candid
from pipeline.targets.calls import encode_args, interpret_reply, render
from pipeline.targets.profile import canisters_dir, load_profile
from pipeline.upload.plan import plan_chunks
from tests.fixtures_upload import LLAMA_CHUNK, sha256, write_gguf
from tests.icsim import sim as icsim_module
from tests.icsim.canisters.llama_cpp import LlamaCppCanister

RENAMES = {
    "file_upload_chunk": "put_chunk",
    "file_download_chunk": "get_chunk",
    "filesystem_file_size": "stat_file",
    "load_model": "load_weights",
}


@pytest.mark.parametrize(
    ("kind", "addressing", "roles"),
    [
        ("llama_cpp", "offset", ["model"]),
        ("icpp_llama2", "append", ["tokenizer", "model"]),
        ("gpt2", "append", ["safetensors", "config", "tokenizer"]),
    ],
)
def test_shipped_kinds_load(kind: str, addressing: str, roles: list[str]) -> None:
    profile = load_profile(kind)
    assert profile.addressing == addressing
    assert [r.name for r in profile.roles] == roles
    assert profile.max_chunk_size == 1_900_000
    assert profile.service is not None
    for method in profile.methods_used():
        assert method in profile.service.methods


def test_kind_steps_follow_the_documented_order() -> None:
    assert [s.method for s in load_profile("llama_cpp").steps] == ["load_model", "set_max_tokens", "ready"]
    assert [s.method for s in load_profile("icpp_llama2").steps] == [
        "initialize",
        "set_canister_mode",
        "ready",
    ]
    gpt2 = load_profile("gpt2")
    assert [s.method for r in gpt2.roles for s in (r.upload, *r.after)] == [
        "append_safetensors_bytes",
        "store_safetensors_bytes_to_stable",
        "load_safetensors_bytes_from_stable",
        "append_config_bytes",
        "setup_model",
        "append_tokenizer_bytes",
        "store_tokenizer_bytes_to_stable",
        "load_tokenizer_bytes_from_stable",
        "setup_tokenizer",
    ]


def test_render_fills_whole_values_splices_lists_and_formats_text() -> None:
    variables = {"chunk": b"\x00\x01", "offset": 7, "load_args": ["--ctx", "8"], "remote": "m.gguf"}
    template = [
        {"chunk": "{chunk}", "offset": "{offset}", "args": ["--model", "{remote}", "{*load_args}"]},
        "x{offset}",
    ]
    assert render(template, variables) == [
        {"chunk": b"\x00\x01", "offset": 7, "args": ["--model", "m.gguf", "--ctx", "8"]},
        "x7",
    ]
    with pytest.raises(PrepError, match=r"\{missing\}"):
        render("{missing}", variables)


def test_upload_args_encode_with_the_did_types() -> None:
    profile = load_profile("llama_cpp")
    role = profile.role("model")
    arg = encode_args(
        profile, role.upload, {"remote": "models/m.gguf", "chunk": b"abc", "chunk_size": 3, "offset": 5}
    )
    (decoded,) = candid.decode(arg, list(profile.service.methods["file_upload_chunk"].args))
    assert decoded == {"filename": "models/m.gguf", "chunk": b"abc", "chunksize": 3, "offset": 5}


def test_replies_unwrap_ok_and_refuse_err() -> None:
    profile = load_profile("llama_cpp")
    size = profile.role("model").size
    rets = list(profile.service.methods["filesystem_file_size"].rets)
    ok = candid.encode(rets, [{"Ok": {"exists": True, "filename": "f", "filesize": 42, "msg": ""}}])
    assert interpret_reply(profile, size, ok) == 42
    err = candid.encode(rets, [{"Err": {"Other": "no access"}}])
    with pytest.raises(PrepError, match="no access"):
        interpret_reply(profile, size, err)


def test_drifted_reply_types_decode_by_wire_type() -> None:
    """gpt2's .did says `setup_tokenizer : () -> (opt text)`; the code replies variant { Ok; Err : text }."""
    profile = load_profile("gpt2")
    step = profile.role("tokenizer").after[-1]
    wire = "variant { Ok; Err : text }"
    assert interpret_reply(profile, step, candid.encode([wire], [{"Ok": None}])) is None
    with pytest.raises(PrepError, match="bad tokenizer"):
        interpret_reply(profile, step, candid.encode([wire], [{"Err": "bad tokenizer"}]))


def test_profile_errors_name_the_file_and_key(tmp_path: Path) -> None:
    folder = _copy_kind("llama_cpp", tmp_path / "broken")
    text = (folder / "profile.toml").read_text()
    (folder / "profile.toml").write_text(text.replace("addressing = ", "adressing_typo = 1\naddressing = "))
    with pytest.raises(PrepError, match=r"profile.toml: key 'adressing_typo'"):
        load_profile(folder)
    (folder / "profile.toml").write_text(text.replace('"file_upload_chunk"', '"no_such_method"'))
    with pytest.raises(PrepError, match=r"method 'no_such_method' is not in .*service.did"):
        load_profile(folder)
    with pytest.raises(PrepError, match="unknown canister kind"):
        load_profile("no_such_kind")


class RenamedLlamaCpp(LlamaCppCanister):
    """llama_cpp's protocol under other method names: what a fork of the canister might publish."""

    kind = "llama_renamed"


for _old, _new in RENAMES.items():
    setattr(RenamedLlamaCpp, _new, getattr(LlamaCppCanister, _old))


def _copy_kind(kind: str, to: Path, renames: dict[str, str] | None = None) -> Path:
    shutil.copytree(canisters_dir() / kind, to)
    for name in ("profile.toml", "service.did"):
        text = (to / name).read_text()
        for old, new in (renames or {}).items():
            text = re.sub(rf"\b{old}\b", new, text)
        (to / name).write_text(text)
    return to


def test_a_new_kind_with_an_existing_protocol_is_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(icsim_module, "CANISTER_KINDS", (*icsim_module.CANISTER_KINDS, RenamedLlamaCpp))
    folder = _copy_kind("llama_cpp", tmp_path / "llama_renamed", RENAMES)
    text = (folder / "profile.toml").read_text().replace('kind = "llama_cpp"', 'kind = "llama_renamed"')
    (folder / "profile.toml").write_text(text)
    model = write_gguf(tmp_path / "model.gguf", 4_000_000)
    from tests.fixtures_upload import EngineRun
    from tests.icsim import IcSim

    with IcSim() as sim:
        run = EngineRun(sim, tmp_path / "work")
        report = run(folder, [("model", model, "models/model.gguf")])
        canister = sim.canister("llama_renamed")
        assert sha256(canister.file_bytes("models/model.gguf")) == sha256(model.read_bytes())
        chunks = plan_chunks(model.stat().st_size, LLAMA_CHUNK)
        assert canister.counters.calls["put_chunk"] == len(chunks) == 4  # ~1 MB chunks tile half a block
        assert canister.counters.calls["file_upload_chunk"] == 0
        assert canister.counters.calls["load_weights"] == 1
        assert report.steps == ["load_weights", "set_max_tokens", "ready"]
    assert hashlib.sha256(model.read_bytes()).hexdigest() == report.files[0]["sha256"]


def test_gpt2_says_which_roles_outlive_an_upgrade() -> None:
    gpt2 = load_profile("gpt2")
    for name in ("safetensors", "tokenizer"):
        role = gpt2.role(name)
        assert role.stable is not None
        assert role.after[role.stable.kept_by].method == f"store_{name}_bytes_to_stable"
        assert role.after[role.stable.restore].method == f"load_{name}_bytes_from_stable"
    assert gpt2.role("config").stable is None  # heap only: sent again after an upgrade
    assert all(role.stable is None for role in load_profile("icpp_llama2").roles)


@pytest.mark.parametrize(
    ("stable", "error"),
    [
        ('{ kept_by = "store_safetensors_bytes_to_stable", restore = "nope" }', r"stable.restore'"),
        ('{ kept_by = "load_safetensors_bytes_from_stable", restore = "store_safetensors_bytes_to_stable" }',
         r"stable.restore': expected an after-step that runs later"),
        ('{ kept_by = "store_safetensors_bytes_to_stable" }', r"stable.restore'"),
        ('{ kept_by = "store_safetensors_bytes_to_stable", restore = "load_safetensors_bytes_from_stable", '
         "extra = 1 }", r"stable.extra'"),
        ('"store_safetensors_bytes_to_stable"', r"stable': expected a table"),
    ],
)  # fmt: skip
def test_stable_copy_errors_name_the_key(tmp_path: Path, stable: str, error: str) -> None:
    folder = _copy_kind("gpt2", tmp_path / "broken")
    profile = folder / "profile.toml"
    text = profile.read_text()
    line = next(x for x in text.splitlines() if x.startswith('stable = { kept_by = "store_safetensors'))
    profile.write_text(text.replace(line, f"stable = {stable}"))
    with pytest.raises(PrepError, match=error):
        load_profile(folder)


def test_a_stable_copy_needs_a_length_query_to_check_it(tmp_path: Path) -> None:
    folder = _copy_kind("gpt2", tmp_path / "no_length")
    profile = folder / "profile.toml"
    profile.write_text(profile.read_text().replace('length = { method = "safetensors_bytes_length" }\n', ""))
    with pytest.raises(PrepError, match=r"roles\[0\].stable': expected a role with a length query"):
        load_profile(folder)


def test_a_step_may_only_consume_a_role_with_a_stable_copy(tmp_path: Path) -> None:
    assert load_profile("gpt2").role("config").after[0].consumes == ("safetensors",)
    folder = _copy_kind("gpt2", tmp_path / "consumes_config")
    profile = folder / "profile.toml"
    profile.write_text(profile.read_text().replace('consumes = ["safetensors"]', 'consumes = ["config"]'))
    with pytest.raises(PrepError, match="'setup_model' consumes role 'config', which has no stable copy"):
        load_profile(folder)
