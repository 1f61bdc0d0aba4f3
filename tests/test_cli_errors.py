"""Every command, given hostile input, ends in one `error:` line with a hint and the README's exit code
(2 for a bad argument or input file), never a traceback and never the "bug in prep" fallback of
pipeline.cli.app.main. Run in-process: an exception escaping main() fails the test with its traceback."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pipeline.cli.app import COMMANDS, main
from pipeline.recipes import copy_shipped_recipe
from pipeline.targets.profile import canisters_dir

CANISTER = "rrkah-fqaaa-aaaaa-aaaaq-cai"
CLOSED = "http://127.0.0.1:9"  # nothing listens: a case that reached the network would fail slowly, not pass

# Hostile paths, made by the `project` fixture: a folder, random bytes, an empty file, text, nothing.
HOSTILE = ("folder", "binary.bin", "empty.gguf", "text.txt", "missing")
FILES = HOSTILE[1:4]


def cases() -> list[tuple[str, list[str], int]]:
    found: list[tuple[str, list[str], int]] = []

    def add(expected: int, *args: str) -> None:
        found.append((" ".join(args), list(args), expected))

    for bad in HOSTILE:
        add(2, "inspect", bad)
        add(2, "convert", bad, "--out", "out.gguf")
        add(2, "quantize", bad, "--out", "out.gguf")
        add(2, "trim", bad, "--out", "trimmed")
        add(2, "whoami", "--pem", bad)
        add(2, "canister", "info", "--network", CLOSED, "--canister", CANISTER, "--pem", bad)
        add(2, "upload", "--file", "model.gguf", "--kind", "llama_cpp", "--canister", CANISTER, "--pem", bad)
        add(2, "smoke", "--kind", "llama_cpp", "--prompt", "hi", "--canister", CANISTER, "--pem", bad)
        add(2, "run", "stories15m", "--network", CLOSED, "--canister", CANISTER, "--pem", bad)
        add(2, "upload", "--file", "model.gguf", "--kind", "llama_cpp", "--network", CLOSED, "--fleet", bad)
        add(2, "smoke", "--kind", "llama_cpp", "--prompt", "hi", "--network", CLOSED, "--fleet", bad)
        add(2, "run", "stories15m", "--network", CLOSED, "--fleet", bad)
        add(2, "fetch", bad)
        add(2, "build", f"./{bad}")
        add(2, "release", f"./{bad}")
        add(2, "lock", f"./{bad}")
        add(2, "tune", f"./{bad}", "--canister", CANISTER, "--network", CLOSED)
        add(2, "recipes", "show", f"./{bad}")
        if bad != "folder":  # an empty folder is a folder without recipes
            add(2, "recipes", "--recipes-dir", bad)
            add(2, "lock", "--all", "--recipes-dir", bad)
        add(1, "verify", bad)  # a bundle that does not verify is a failed check
        add(2, "status", "--fleet", bad, "--network", CLOSED)
        add(2, "status", "--canister", CANISTER, "--network", CLOSED, "--pem", bad)
        add(2, "kinds", "check", bad)
    for bad in ("folder", "missing"):
        add(2, "upload", "--file", bad, "--kind", "llama_cpp", "--canister", CANISTER, "--network", CLOSED)
    for kind in ("../../etc", "..", "", "no such kind", "folder", "./folder"):
        add(2, "upload", "--file", "model.gguf", "--kind", kind, "--canister", CANISTER, "--network", CLOSED)
        add(2, "smoke", "--kind", kind, "--prompt", "hi", "--canister", CANISTER, "--network", CLOSED)
        add(2, "tune", "--kind", kind, "--canister", CANISTER, "--network", CLOSED)
        if kind:
            add(2, "kinds", "check", "service.did", "--kind", kind)
    for remote in ("", "/models/model.gguf", "models/../x", "a\\b", "x" * 300, "tab\there"):
        add(
            2, "upload", "--file", "model.gguf", "--kind", "llama_cpp", "--remote", remote,
            "--canister", CANISTER, "--network", CLOSED,
        )  # fmt: skip
    add(2, "upload", "--file", "model.gguf", "--kind", "gpt2", "--remote", "weights", "--canister", CANISTER)
    for repo in ("bad repo!!", "a/b/c", "/abs", "", "owner/"):
        add(2, "fetch", repo, "--file", "x")
        add(2, "recipes", "new", repo)
    for option, value in (("--kind", "../../etc"), ("--kind", "nope"), ("--name", "../x")):
        add(2, "recipes", "new", "owner/name", option, value)
    add(2, "fetch", "owner/name", "--file", "")
    for network in ("ftp://host", "nowhere", "http://"):
        add(2, "canister", "info", "--network", network, "--canister", CANISTER, "--anonymous")
    add(2, "canister", "info", "--network", CLOSED, "--canister", "not a canister!", "--anonymous")
    for name in ("nope", "../stories15m", ""):
        add(2, "recipes", "copy", name)
        add(2, "recipes", "show", name)
    for cycles in ("lots", "-1", "1e400", "", "T", "nan", "0x10", "1,5T"):
        add(2, "status", "--canister", CANISTER, "--network", CLOSED, "--min-cycles", cycles)
    add(2, "status", "--network", CLOSED)  # no canister named
    add(2, "status", "--canister", CANISTER, "--fleet", "text.txt", "--network", CLOSED)
    add(2, "status", "--canister", "not a canister!", "--network", CLOSED, "--anonymous")
    for command in ("upload", "smoke", "run", "tune"):
        add(2, command, "stories15m")  # --canister is required
    for command in ("upload", "smoke", "run"):
        add(2, command, "stories15m", "--canister", CANISTER, "--canister", CANISTER)  # listed twice
        add(2, command, "stories15m", "--canister", CANISTER, "--only", CANISTER)  # --only needs --fleet
        add(2, command, "stories15m", "--canister", CANISTER, "--fleet", "text.txt")  # not both
    return found


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "folder").mkdir()
    (tmp_path / "binary.bin").write_bytes(os.urandom(4096))
    (tmp_path / "empty.gguf").write_bytes(b"")
    (tmp_path / "text.txt").write_text("hello\n")
    (tmp_path / "model.gguf").write_bytes(b"GGUF" + os.urandom(64))
    shutil.copy(canisters_dir() / "llama_cpp" / "service.did", tmp_path / "service.did")
    copy_shipped_recipe("stories15m", tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREP_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("DFX_CONFIG_ROOT", str(tmp_path / "no-dfx"))
    monkeypatch.delenv("PREP_PEM", raising=False)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str]:
    try:
        main(args)
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    return code, capsys.readouterr().err


def assert_one_clear_error(code: int, err: str, expected: int) -> None:
    assert code == expected, err
    assert "Traceback" not in err and "unexpected" not in err, err
    if "Usage: prep" in err:  # typer's own usage error: a boxed message naming the option
        return
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert "hint: " in err or code == 1, err


@pytest.mark.parametrize(("label", "args", "expected"), [pytest.param(*c, id=c[0][:80]) for c in cases()])
def test_hostile_input_gets_one_error_line_and_exit_code(
    project: Path, capsys: pytest.CaptureFixture[str], label: str, args: list[str], expected: int
) -> None:
    code, err = run(capsys, args)
    assert_one_clear_error(code, err, expected)


@pytest.mark.parametrize("command", ["fetch", "build", "upload", "run", "release"])
def test_a_work_folder_that_is_a_file_is_refused_before_any_work(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setenv("PREP_WORKDIR", str(project / "text.txt"))
    extra = ["--canister", CANISTER, "--network", CLOSED] if command in ("upload", "run") else []
    code, err = run(capsys, [command, "stories15m", *extra])
    assert_one_clear_error(code, err, 2)
    assert "$PREP_WORKDIR" in err and "is a file, not a folder" in err


def test_every_command_is_swept() -> None:
    swept = {case[1][0] for case in cases()} | {"version"}  # version takes no input
    assert swept == {name for name, _ in COMMANDS}


def test_an_unexpected_exception_is_one_line_naming_it_as_a_bug(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.cli.version

    def broken() -> dict[str, str]:
        raise KeyError("surprise")

    monkeypatch.setattr(pipeline.cli.version, "library_versions", broken)
    code, err = run(capsys, ["version"])
    assert code == 1 and "Traceback" not in err
    assert err.startswith("error: unexpected KeyError: 'surprise'") and "PREP_DEBUG=1" in err
    monkeypatch.setenv("PREP_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["version"])
