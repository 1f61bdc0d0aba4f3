"""`make demo`: the whole pipeline on this machine alone, no network needed.

Starts hubsim (a Hugging Face emulator serving tiny generated models under the shipped recipes' repo
names) and icsim (an Internet Computer replica emulator hosting one canister of each kind), then runs
`prep run` of one tiny recipe into each canister kind, as a user would in a dfx project folder, shows
the answers, reruns one to show that nothing is redone, and stops both emulators (also on failure
or Ctrl-C).

    python scripts/demo.py [--keep]      --keep leaves the demo folder (workspace, recipes) behind
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

PROJECT = Path(__file__).resolve().parent.parent
# One tiny recipe per canister kind; hubsim's tiny world writes them with their sources pointing at it.
DEMO_RUNS = (("smollm2-135m", "llama_cpp"), ("gpt2-open-instruct", "gpt2"), ("stories15m", "icpp_llama2"))
SERVER_START_TIMEOUT_S = 120


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", action="store_true", help="keep the demo folder afterwards")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="prep-demo-"))
    started = time.monotonic()
    try:
        with emulators(folder) as (hub_lines, ic_lines):
            project = make_dfx_project(folder / "world", ic_lines)
            env = demo_env(folder, hub_lines["HF_ENDPOINT"])
            pem = ic_lines["identity"]
            for recipe, kind in DEMO_RUNS:
                prep(
                    ["run", recipe, "--network", "local", "--canister", kind, "--pem", pem, "--yes"],
                    project,
                    env,
                )
            first_recipe, first_kind = DEMO_RUNS[0]
            say("a rerun finds every stage done:")
            prep(
                ["run", first_recipe, "--network", "local", "--canister", first_kind, "--pem", pem],
                project,
                env,
            )
    except KeyboardInterrupt:
        say("interrupted; emulators stopped")
        return 130
    except DemoFailed as err:
        say(f"demo failed: {err}")
        return 1
    finally:
        if args.keep:
            say(f"demo folder kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    say(f"demo passed in {time.monotonic() - started:.0f} s: one model in each canister kind, each answering")
    return 0


class DemoFailed(Exception):
    pass


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


@contextmanager
def emulators(folder: Path) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """Runs hubsim and icsim as their own processes; stops both however the block ends."""
    servers: list[subprocess.Popen[str]] = []
    try:
        say("starting hubsim (tiny models under the recipes' Hugging Face repo names)")
        hub = start(servers, ["-m", "tests.hubsim", "--tiny-world", str(folder / "world")])
        hub_lines = read_until(hub, "RECIPES")
        print(f"   HF_ENDPOINT {hub_lines['HF_ENDPOINT']}", flush=True)
        say("starting icsim (an IC replica with a llama_cpp, a gpt2 and an icpp_llama2 canister)")
        ic = start(servers, ["-m", "tests.icsim"])
        ic_lines = read_until(ic, "root_key")
        for kind in ("llama_cpp", "gpt2", "icpp_llama2", "url"):
            print(f"   {kind} {ic_lines[kind]}", flush=True)
        yield hub_lines, ic_lines
    finally:
        for server in servers:
            stop(server)


def start(servers: list[subprocess.Popen[str]], args: list[str]) -> subprocess.Popen[str]:
    server = subprocess.Popen(
        [sys.executable, *args],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # Ctrl-C reaches the demo, which stops the servers itself
    )
    servers.append(server)
    return server


def read_until(server: subprocess.Popen[str], last_key: str) -> dict[str, str]:
    """The `KEY VALUE` lines a server prints on start-up, up to and including `last_key`."""
    assert server.stdout is not None
    lines: dict[str, str] = {}
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        if not line:
            raise DemoFailed(f"{' '.join(map(str, server.args))} exited with code {server.wait()}")
        key, _, value = line.strip().partition(" ")
        lines[key] = value
        if key == last_key:
            return lines
    raise DemoFailed(f"{' '.join(map(str, server.args))} did not start within {SERVER_START_TIMEOUT_S} s")


def stop(server: subprocess.Popen[str]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def make_dfx_project(world: Path, ic_lines: dict[str, str]) -> Path:
    """A dfx-style project folder: `--network local` is icsim, canister names map to its canisters."""
    (world / "dfx.json").write_text(
        json.dumps({"networks": {"local": {"bind": urlsplit(ic_lines["url"]).netloc}}}, indent=2) + "\n"
    )
    ids = {kind: {"local": ic_lines[kind].split()[0]} for _, kind in DEMO_RUNS}
    (world / ".dfx" / "local").mkdir(parents=True, exist_ok=True)
    (world / ".dfx" / "local" / "canister_ids.json").write_text(json.dumps(ids, indent=2) + "\n")
    return world


def demo_env(folder: Path, hf_endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PREP_"))}
    env.update(
        HF_ENDPOINT=hf_endpoint,
        HF_HOME=str(folder / "hf-home"),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        PREP_WORKDIR=str(folder / "work"),
        PYTHONPATH=str(PROJECT),
    )
    return env


def prep(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    say("prep " + " ".join(args))
    done = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env)
    if done.returncode != 0:
        raise DemoFailed(f"prep {args[0]} {args[1]} exited with code {done.returncode}")


if __name__ == "__main__":
    raise SystemExit(main())
