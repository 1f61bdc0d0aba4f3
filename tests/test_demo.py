"""`make demo`: hubsim + icsim + `prep run` into each canister kind; both servers stopped afterwards."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest

from tests.fixtures_run import PROJECT

DEMO = [sys.executable, str(PROJECT / "scripts" / "demo.py")]


def ports_in(output: str) -> list[int]:
    urls = re.findall(r"(?:HF_ENDPOINT|url) (http://127\.0\.0\.1:\d+)", output)
    return [urlsplit(u).port for u in urls]


def is_listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_demo_runs_every_kind_and_stops_its_servers() -> None:
    done = subprocess.run(DEMO, cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for kind in ("llama_cpp", "gpt2", "icpp_llama2"):
        assert re.search(rf"-> {kind} canister .* at http", done.stdout), kind
    assert done.stdout.count("  answer: ") == 4
    assert "done in" in done.stdout and "nothing to do" in done.stdout and "demo passed" in done.stdout
    ports = ports_in(done.stdout)
    assert len(ports) == 2 and not any(is_listening(p) for p in ports)


@pytest.mark.slow
def test_demo_interrupted_stops_its_servers() -> None:
    demo = subprocess.Popen(DEMO, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert demo.stdout is not None
    seen = ""
    for line in demo.stdout:
        seen += line
        if line.startswith("== prep run"):
            time.sleep(0.5)
            demo.send_signal(signal.SIGINT)
            break
    seen += demo.stdout.read()
    assert demo.wait(timeout=60) == 130, seen
    ports = ports_in(seen)
    assert len(ports) == 2 and not any(is_listening(p) for p in ports)
