"""HubSim speaks the wire protocol huggingface_hub expects (FACTS.md §4), checked with plain httpx."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import httpx

from tests.hubsim import HubSim

DATA = bytes(range(256)) * 20


def test_wire_protocol() -> None:
    with HubSim(lfs_threshold=1000, page_size=1) as sim:
        commit = sim.add_repo("acme/m", {"w.bin": DATA, "c.json": b"{}"})
        sim.add_repo("acme/g", {"c.json": b"{}"}, gated=True)
        with httpx.Client(base_url=sim.url) as client:
            assert client.get("/api/agent-harnesses").status_code == 404
            assert client.get("/api/models/acme/m/revision/main").json()["sha"] == commit

            page = client.get(f"/api/models/acme/m/tree/{commit}", params={"recursive": "true"})
            assert len(page.json()) == 1 and 'rel="next"' in page.headers["Link"]
            second = httpx.get(page.links["next"]["url"]).json()
            assert [e["path"] for e in page.json() + second] == ["c.json", "w.bin"]
            assert second[0]["lfs"]["oid"] == hashlib.sha256(DATA).hexdigest()

            info = client.get("/api/models/acme/m", params={"blobs": "true"}).json()
            lfs = {s["rfilename"]: s.get("lfs") for s in info["siblings"]}
            assert lfs["w.bin"]["sha256"] == hashlib.sha256(DATA).hexdigest() and lfs["c.json"] is None

            head = client.head("/acme/m/resolve/main/w.bin")
            assert head.status_code == 302
            assert head.headers["X-Repo-Commit"] == commit
            assert head.headers["X-Linked-Etag"] == f'"{hashlib.sha256(DATA).hexdigest()}"'
            assert head.headers["X-Linked-Size"] == str(len(DATA))
            assert head.headers["Location"].startswith(f"http://localhost:{sim.port}/cdn/")
            ranged = httpx.get(head.headers["Location"], headers={"Range": "bytes=100-"})
            assert ranged.status_code == 206 and ranged.content == DATA[100:]
            assert ranged.headers["Content-Range"] == f"bytes 100-{len(DATA) - 1}/{len(DATA)}"

            regular = client.get("/acme/m/resolve/main/c.json")
            assert regular.status_code == 200 and regular.content == b"{}"
            blob = hashlib.sha1(b"blob 2\0{}").hexdigest()
            assert regular.headers["ETag"] == f'"{blob}"' and regular.headers["Content-Length"] == "2"

            for path, status, code in [
                ("/api/models/acme/none/revision/main", 404, "RepoNotFound"),
                ("/api/models/acme/m/revision/nope", 404, "RevisionNotFound"),
                ("/acme/m/resolve/main/missing.txt", 404, "EntryNotFound"),
                ("/acme/g/resolve/main/c.json", 401, "GatedRepo"),
            ]:
                response = client.get(path)
                assert (response.status_code, response.headers["X-Error-Code"]) == (status, code), path
            wrong = client.get("/acme/g/resolve/main/c.json", headers={"Authorization": "Bearer nope"})
            assert (wrong.status_code, wrong.headers["X-Error-Code"]) == (403, "GatedRepo")
            ok = client.get(
                "/acme/g/resolve/main/c.json", headers={"Authorization": "Bearer hf_hubsim_token"}
            )
            assert ok.status_code == 200

            sim.corrupt("acme/m", "w.bin")
            bad = httpx.get(head.headers["Location"]).content
            assert len(bad) == len(DATA) and bad != DATA


def test_standalone_server_prints_endpoint(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.hubsim"], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line[0] == "HF_ENDPOINT"
        assert httpx.get(f"{line[1]}/api/agent-harnesses").status_code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=10)
