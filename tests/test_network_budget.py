"""Every network wait is bounded by PREP_NETWORK_TIMEOUT and reported while it lasts (real processes)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.ic.client import IcClient
from pipeline.ic.errors import GaveUp
from pipeline.ic.identity import anonymous_identity
from pipeline.ic.network import Network
from pipeline.ic.retry import RetryPolicy
from tests.fixtures_network import SilentServer

CANISTER = "rrkah-fqaaa-aaaaa-aaaaq-cai"


def _prep(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.timeout(60)
def test_a_hung_replica_gives_up_within_the_budget_and_says_so(silent_server: SilentServer, prep_env) -> None:
    done = _prep(
        prep_env | {"PREP_NETWORK_TIMEOUT": "3"},
        "canister", "info", "--network", silent_server.url, "--canister", CANISTER,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    read_state = f"{silent_server.url}/api/v3/canister/{CANISTER}/read_state"
    assert f"still waiting for {read_state}" in done.stderr
    assert f"{read_state}: gave up after 3 s (1 attempt)" in done.stderr
    assert "no answer within" in done.stderr and "PREP_NETWORK_TIMEOUT (now 3 s)" in done.stderr
    assert "Traceback" not in done.stderr
    assert silent_server.connections == 1  # one request waited out the budget: no stack of retries


@pytest.mark.timeout(60)
def test_a_refused_connection_gives_up_quickly_with_a_hint(refused_url: str, prep_env) -> None:
    done = _prep(
        prep_env | {"PREP_NETWORK_TIMEOUT": "2"},
        "canister", "info", "--network", refused_url, "--canister", CANISTER,
    )  # fmt: skip
    assert done.returncode == 1
    assert f"cannot reach {refused_url}: is the replica running?" in done.stderr
    assert "gave up after" in done.stderr and "check --network" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.timeout(60)
def test_a_hung_hub_gives_up_within_the_budget(silent_server: SilentServer, prep_env, tmp_path) -> None:
    env = prep_env | {
        "PREP_NETWORK_TIMEOUT": "3",
        "HF_ENDPOINT": silent_server.url,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_XET": "1",
    }
    done = _prep(env, "fetch", "someone/model", "--file", "config.json")
    assert done.returncode == 1, done.stderr
    assert f"still waiting for the Hub at {silent_server.url}" in done.stderr
    assert f"the Hub at {silent_server.url}" in done.stderr and "Traceback" not in done.stderr


def test_a_bad_budget_is_a_usage_error(prep_env, refused_url: str) -> None:
    done = _prep(
        prep_env | {"PREP_NETWORK_TIMEOUT": "soon"},
        "canister", "info", "--network", refused_url, "--canister", CANISTER,
    )  # fmt: skip
    assert done.returncode == 2
    assert "PREP_NETWORK_TIMEOUT='soon' is not a number of seconds" in done.stderr


def test_every_read_shares_the_budget_in_process(silent_server: SilentServer) -> None:
    """A query waits for its node keys (read_state) within the same budget, and the wait is announced."""
    said: list[str] = []
    policy = RetryPolicy(budget_s=1.0, notice_after_s=0.2)
    network = Network("hung", silent_server.url, is_mainnet=False)
    with (
        IcClient(network, anonymous_identity(), root_key=b"unused", retry=policy, say=said.append) as client,
        pytest.raises(GaveUp, match=r"/read_state: gave up after 1 s \(1 attempt\)"),
    ):
        client.query(CANISTER, "health", b"DIDL\x00\x00")
    assert said and said[0].startswith(f"still waiting for {silent_server.url}/api/v3/canister/{CANISTER}")


class _WrongJsonHub(BaseHTTPRequestHandler):
    """Answers the Hub API with JSON of the wrong types (a hostile or broken mirror)."""

    def do_GET(self) -> None:  # noqa: N802
        if "/tree/" in self.path:
            body = [{"type": "file", "path": "config.json", "size": "huge", "oid": 7}]
        else:
            body = {"id": "someone/model", "sha": "a" * 40, "siblings": []}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_hub_json_of_the_wrong_shape_is_refused_with_a_message(prep_env, tmp_path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WrongJsonHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        env = prep_env | {"HF_ENDPOINT": url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_XET": "1"}
        done = _prep(env, "fetch", "someone/model", "--file", "config.json")
    finally:
        server.shutdown()
    assert done.returncode == 1, done.stderr
    assert f"the Hub at {url} listed a malformed file entry in someone/model" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.timeout(120)
def test_a_download_that_keeps_moving_is_resumed_past_the_budget(hubsim, prep_env, tmp_path) -> None:
    """Two dropped attempts with a silent second each, then a whole one: longer in all than the budget,
    but never that long without a sign of life, so the fetch completes (issue #9 item 1)."""
    data = bytes(range(256)) * 1200
    hubsim.add_repo("acme/slow", {"model.bin": data})
    hubsim.interrupt_download("model.bin", after=len(data) // 3, times=2, pause_s=1.2)
    env = prep_env | {
        "PREP_NETWORK_TIMEOUT": "2.5",
        "HF_ENDPOINT": hubsim.url,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_XET": "1",
    }
    done = _prep(env, "fetch", "acme/slow", "--file", "model.bin", "--json")
    assert done.returncode == 0, done.stderr
    # huggingface_hub resumes from what it has written, in 10 MB steps: this small file starts over.
    assert len([path for verb, path in hubsim.requests if verb == "GET" and path.startswith("/cdn/")]) == 3
    fetched = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert fetched and fetched[-1]["event"] == "result"
