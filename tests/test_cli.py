"""The CLI's shared behaviour: version, help, exit codes, --json on stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipeline import __version__


def run_prep(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True)


def test_version_flag_prints_version() -> None:
    done = run_prep("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"prep {__version__}"


def test_help_lists_commands() -> None:
    done = run_prep("--help")
    assert done.returncode == 0
    assert "version" in done.stdout


def test_unknown_option_is_usage_error() -> None:
    done = run_prep("version", "--no-such-option")
    assert done.returncode == 2
    assert "no-such-option" in done.stderr


def test_json_output_is_one_object_per_line() -> None:
    done = run_prep("version", "--json")
    assert done.returncode == 0
    [line] = done.stdout.splitlines()
    payload = json.loads(line)
    assert payload["event"] == "result"
    assert payload["prep"] == __version__
    assert "gguf" in payload["libraries"]


HEAVY_MODULES = (
    "numpy",
    "gguf",
    "huggingface_hub",
    "httpx",
    "httpcore",
    "safetensors",
    "tokenizers",
    "cbor2",
    "cryptography",
    "icp_agent",
    "icp_candid",
    "icp_certificate",
    "icp_identity",
    "icp_principal",
    "pipeline.ic",
    "pipeline.hub",
    "pipeline.upload",
    "pipeline.build",
    "pipeline.convert",
    "pipeline.quantize",
    "pipeline.formats",
)

STARTUP_PROBE = f"""
import json, sys
import typer.main
import pipeline.cli.app
typer.main.get_command(pipeline.cli.app.app)  # what --help and every command build first
print(json.dumps([name for name in {HEAVY_MODULES!r} if name in sys.modules]))
"""


def test_startup_imports_no_library_stack() -> None:
    # `prep --version` and `prep --help` import every command module: those must leave their libraries
    # to the command functions (see COMMANDS in pipeline/cli/app.py).
    done = subprocess.run([sys.executable, "-c", STARTUP_PROBE], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_cli_copies_of_library_constants_agree() -> None:
    from pipeline.cli import convert, ic_options, quantize
    from pipeline.convert import OUTTYPES
    from pipeline.quantize import LLAMA_FILE_TYPES, NATIVE_FILE_TYPES
    from pipeline.upload.request import DEFAULT_WINDOW

    assert ic_options.DEFAULT_WINDOW == DEFAULT_WINDOW
    assert tuple(OUTTYPES) == convert.OUTTYPES
    assert tuple(NATIVE_FILE_TYPES) == quantize.NATIVE_FILE_TYPES
    assert tuple(LLAMA_FILE_TYPES) == quantize.LLAMA_FILE_TYPES


def test_human_counts_say_what_they_count() -> None:
    from pipeline.cli.upload import _status_text
    from pipeline.upload.progress import describe_event

    plan = {"event": "plan", "kind": "gpt2", "canister": "c", "url": "u", "bytes": 9, "messages": 1}
    assert "9 bytes in 1 message (" in (describe_event({**plan, "estimated_cycles": 1_218_000}) or "")
    row = {
        "role": "model", "remote": "models/model.gguf", "addressing": "offset", "size": 98_362_432,
        "chunks_done": 19, "chunks_total": 52, "acknowledged_bytes": 36_100_000, "bytes_complete": False,
        "in_flight": 2, "same_code": True, "canister_bytes": 36_100_000,
    }  # fmt: skip
    assert _status_text([row]) == (
        "model -> models/model.gguf: journal: 19 of 52 chunks (36,100,000 of 98,362,432 bytes) acknowledged, "
        "2 in flight; canister: 36,100,000 bytes"
    )
    append = {k: v for k, v in row.items() if not k.startswith("chunks")}
    append.update(addressing="append", acknowledged_bytes=1_000, size=4_000)
    assert "journal: 1,000 of 4,000 bytes acknowledged" in _status_text([append])


def test_one_mainnet_question_for_every_uploading_command(capsys, monkeypatch) -> None:
    from pipeline.cli import ic_options, run, upload
    from pipeline.cli.output import Output

    plan = {
        "bytes": 98_362_432,
        "messages": 52,
        "kind": "llama_cpp",
        "canister": "c",
        "estimated_cycles": 2.6e11,
    }
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert ic_options.mainnet_confirmation(Output(), yes=False)(plan) is False  # no terminal: no
    assert capsys.readouterr().err == (
        "mainnet: 98,362,432 bytes in 52 messages to llama_cpp canister c cost about 0.260 T cycles\n"
    )
    assert ic_options.mainnet_confirmation(Output(), yes=True)(plan) is True
    assert capsys.readouterr().err == ""
    for command in (run, upload):  # both ask through it, none with a wording of its own
        source = Path(command.__file__).read_text()
        assert "mainnet_confirmation(out, yes)" in source and "typer.confirm" not in source


def test_outside_a_project_recipes_lists_and_shows_the_shipped_examples(tmp_path: Path) -> None:
    def prep(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipeline", *args], cwd=tmp_path, capture_output=True, text=True
        )

    listed = prep("recipes", "--json")
    assert listed.returncode == 0 and "examples shipped with prep" in listed.stderr
    payload = json.loads(listed.stdout)
    assert payload["examples"] is True and "stories15m" in {r["name"] for r in payload["recipes"]}
    shown = prep("recipes", "show", "stories15m")
    assert shown.returncode == 0 and "target.kind = 'icpp_llama2'" in shown.stdout
    fetched = prep("fetch", "stories15m")  # work that writes a lock needs the project's own recipe
    assert fetched.returncode == 2 and "no recipes here" in fetched.stderr
    assert prep("recipes", "copy", "stories15m").returncode == 0
    assert "examples" not in prep("recipes").stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "recipes"]
