"""`python -m tests.icsim` serves on its own and prints what tools need to reach it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cbor2
import httpx
from icp_identity import Identity

from tests.hubsim.world import make_small_gguf
from tests.icsim import IcSim

REPO = Path(__file__).resolve().parents[1]


def test_standalone_runner_prints_canisters_identity_and_root_key() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.icsim", "--port", "0", "--block-interval", "0.01", "--latency", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [process.stdout.readline().split(maxsplit=1) for _ in range(8)]
        fields = {key: value.strip() for key, value in lines}
        assert [key for key, _ in lines[:4]] == ["llama_cpp", "icpp_llama2", "gpt2", "ic_llm"]
        principal, subnet = fields["llama_cpp"].split()
        assert principal == "rrkah-fqaaa-aaaaa-aaaaq-cai"
        assert {fields[kind].split()[1] for kind in ("icpp_llama2", "gpt2", "ic_llm")} == {subnet}
        status = cbor2.loads(httpx.get(f"{fields['url']}/api/v2/status").content)
        assert status["root_key"].hex() == fields["root_key"]
        identity = Identity.from_pem(Path(fields["identity"]).read_text())
        assert identity.sender().to_str() == fields["principal"]
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_controller_option_replaces_the_dev_identity(icsim_agent_for) -> None:
    with IcSim(controllers=["2vxsx-fae"]) as sim:
        agent = icsim_agent_for(sim, Identity(anonymous=True))
        canister = sim.canister_ids["llama_cpp"]
        (reply,) = agent.query_raw(canister, "check_access", b"DIDL\x00\x00")
        assert reply["value"] == {"17724": {"3475804314": 200}}
        (reply,) = icsim_agent_for(sim).query_raw(canister, "check_access", b"DIDL\x00\x00")
        assert reply["value"] == {"3456837": {"3382957744": "Access Denied"}}


def test_runner_with_subnets_prints_each_canister_with_its_subnet() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.icsim", "--port", "0", "--subnets", "3", "--canisters-per-subnet", "2",
         "--background-load", "0.5", "--cycles", "5000000000000"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines = []
        while not lines or lines[-1][0] != "root_key":
            lines.append(process.stdout.readline().split())
        canisters = [line for line in lines if len(line) == 3]
        kinds = [kind for kind, _, _ in canisters]
        assert kinds == ["llama_cpp", "icpp_llama2", "gpt2", "ic_llm"] + ["llama_cpp"] * 5
        subnets = [subnet for _, _, subnet in canisters]
        assert len(set(subnets)) == 3 and subnets.count(subnets[0]) == 5
        assert len({principal for _, principal, _ in canisters}) == 9
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_runner_refuses_a_background_load_out_of_range() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.icsim", "--background-load", "0.95"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "--background-load" in result.stderr


def test_project_option_lets_prep_find_the_emulator_like_a_dfx_replica(tmp_path: Path) -> None:
    # README.md "Try it against the emulator": the emulator writes a dfx-style folder; prep run there
    # with --network local --canister KIND and $PREP_PEM=identity.pem needs nothing else.
    folder = tmp_path / "try-prep"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.icsim", "--port", "0", "--project", str(folder)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        fields: dict[str, str] = {}
        while "project" not in fields:  # KIND ID lines, url, identity, principal, root_key, then project
            key, value = process.stdout.readline().split(maxsplit=1)
            fields[key] = value
        assert Path(fields["project"].strip()) == folder.resolve()
        model = make_small_gguf("qwen2", tmp_path / "model.gguf")
        env = {k: v for k, v in os.environ.items() if k not in ("PREP_WORKDIR", "DFX_CONFIG_ROOT")}
        env.update(PREP_PEM=str(folder / "identity.pem"), PYTHONPATH=str(REPO), HOME=str(tmp_path))

        def prep(*args: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "pipeline", *args], cwd=folder, env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        assert prep("whoami").strip() == fields["principal"].strip()
        local = ("--network", "local", "--canister", "llama_cpp")
        assert "kind         llama_cpp" in prep("canister", "info", *local)
        prep("upload", "--file", str(model), "--kind", "llama_cpp", *local)
        assert "Hello" in prep(
            "smoke", "--kind", "llama_cpp", *local, "--prompt", "Hello", "--max-tokens", "5"
        )
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
