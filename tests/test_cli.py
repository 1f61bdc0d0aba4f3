"""The CLI's shared behaviour: version, help, exit codes, --json on stdout."""

from __future__ import annotations

import json
import subprocess
import sys

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
