"""`prep whoami` and `prep canister info`, run in-process against icsim and generated identities."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli.app import main
from tests.fixtures_ic import IcWorld, PemKey, write_encrypted_pem


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as done:
        code = int(done.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_whoami_prints_the_principal(capsys, ed25519_pem: PemKey, secp256k1_pem: PemKey) -> None:
    assert run(capsys, "whoami", "--pem", str(ed25519_pem.path))[:2] == (0, ed25519_pem.principal + "\n")
    code, out, _ = run(capsys, "whoami", "--pem", str(secp256k1_pem.path), "--json")
    assert code == 0
    assert json.loads(out) | {"source": None} == {
        "event": "result",
        "principal": secp256k1_pem.principal,
        "key_type": "secp256k1",
        "source": None,
    }
    assert run(capsys, "whoami", "--anonymous")[:2] == (0, "2vxsx-fae\n")


def test_whoami_with_a_dfx_identity(capsys, dfx_store: Path) -> None:
    from tests.fixtures_ic import write_ed25519_pem

    (dfx_store / "dev").mkdir()
    key = write_ed25519_pem(dfx_store / "dev" / "identity.pem", version=2)
    assert run(capsys, "whoami", "--identity", "dev")[:2] == (0, key.principal + "\n")


def test_whoami_errors(capsys, tmp_path: Path, dfx_store: Path) -> None:
    code, _, err = run(capsys, "whoami", "--pem", str(write_encrypted_pem(tmp_path / "e.pem")))
    assert code == 2 and "is encrypted" in err and "dfx identity export" in err  # a bad input file
    code, _, err = run(capsys, "whoami", "--identity", "nobody")
    assert code == 1 and "no dfx identity 'nobody'" in err
    code, _, err = run(capsys, "whoami")
    assert code == 1 and "no identity given" in err
    assert f"dfx's default identity is not in {dfx_store}" in err  # says where it looked
    (tmp_path / "binary.pem").write_bytes(bytes(range(256)))
    for bad, says in ((tmp_path, "is a folder, not a PEM file"), (tmp_path / "binary.pem", "is not text")):
        code, _, err = run(capsys, "whoami", "--pem", str(bad))
        assert code == 2 and says in err and "hint: pass --pem PATH" in err


def test_canister_info_against_icsim(capsys, ic_world: IcWorld) -> None:
    code, out, err = run(
        capsys, "canister", "info", "--network", ic_world.sim.url, "--canister", ic_world.canister_id,
        "--pem", str(ic_world.ed25519.path), "--json",
    )  # fmt: skip
    assert code == 0, err
    info = json.loads(out)
    assert info["module_hash"] == ic_world.sim.canister("llama_cpp").module_hash.hex()
    assert sorted(info["controllers"]) == sorted([ic_world.ed25519.principal, ic_world.secp256k1.principal])
    matches = {k["kind"]: k["matches"] for k in info["kinds"]}
    assert matches["llama_cpp"] is True and matches.get("gpt2") is False
    assert info["readiness"] == {"method": "ready", "ready": False, "detail": "Other: Model not yet loaded"}
    model = ic_world.sim.canister("llama_cpp")
    assert info["subnet"] == ic_world.sim.subnet_of("llama_cpp")
    status = info["status"]
    assert (status["cycles"], status["memory_size"]) == (model.system.cycles, model.memory_size())
    assert (status["wasm_memory_limit"], status["freezing_threshold"]) == (3 * 1024**3, 2_592_000)
    assert status["freezing_reserve"] > 0


def test_canister_info_on_a_delegated_subnet_as_a_controller(capsys, tmp_path: Path) -> None:
    from tests.icsim import IcSim

    with IcSim(subnets=2, cycles=7_000_000_000_000) as sim:
        canister = next(h.principal for h in sim.hosted if h.subnet == sim.subnet_principal(1))
        code, out, err = run(
            capsys, "canister", "info", "--network", sim.url, "--canister", canister,
            "--pem", str(sim.dev_identity_pem),
        )  # fmt: skip
        assert code == 0, err
        assert f"subnet       {sim.subnet_principal(1)}" in out
        assert (
            "cycles       7,000,000,000,000 (7.000 T" in out
            and "wasm memory  limit 3,221,225,472 bytes" in out
        )
        assert "freezing     threshold 2,592,000 s (30 days)" in out and "memory       " in out
        code, out, err = run(
            capsys, "canister", "info", "--network", sim.url, "--canister", canister, "--anonymous"
        )
        assert code == 0 and "only a controller may read canister_status" in out


def test_canister_info_human_output_by_name(capsys, ic_world: IcWorld, tmp_path: Path, monkeypatch) -> None:
    ids = tmp_path / ".dfx" / "local" / "canister_ids.json"
    ids.parent.mkdir(parents=True)
    ids.write_text(json.dumps({"llm": {"local": ic_world.canister_id}}))
    (tmp_path / "dfx.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DFX_CONFIG_ROOT", str(tmp_path / "empty"))
    monkeypatch.delenv("PREP_PEM", raising=False)
    code, out, err = run(capsys, "canister", "info", "--url", ic_world.sim.url, "--canister", "llm")
    assert code == 0, err
    assert f"canister     {ic_world.canister_id}" in out
    assert "kind         llama_cpp" in out and "not ready per ready" in out
    code, _, err = run(capsys, "canister", "info", "--url", ic_world.sim.url, "--canister", "llama")
    assert code == 2 and "unknown canister 'llama'" in err and "llm" in err and str(ids) in err


def test_canister_info_unreachable_network(capsys) -> None:
    canister = "rrkah-fqaaa-aaaaa-aaaaq-cai"
    code, _, err = run(
        capsys, "canister", "info", "--network", "http://127.0.0.1:9", "--canister", canister, "--anonymous"
    )
    assert code == 1
    assert "cannot reach http://127.0.0.1:9: is the replica running?" in err


def test_canister_info_recognises_each_hosted_kind(capsys, ic_world: IcWorld) -> None:
    for kind, canister_id in ic_world.sim.canister_ids.items():
        code, out, err = run(
            capsys,
            "canister",
            "info",
            "--network",
            ic_world.sim.url,
            "--canister",
            canister_id,
            "--anonymous",
            "--json",
        )
        assert code == 0, err
        assert [k["kind"] for k in json.loads(out)["kinds"] if k["matches"]] == [kind]


def test_canister_info_for_a_canister_that_does_not_exist(capsys, ic_world: IcWorld) -> None:
    missing = "xmx3s-gyaaa-aaaaa-ae4hq-cai"
    code, _, err = run(
        capsys, "canister", "info", "--network", ic_world.sim.url, "--canister", missing, "--anonymous"
    )
    assert code == 1 and f"canister {missing} does not exist on {ic_world.sim.url}" in err
