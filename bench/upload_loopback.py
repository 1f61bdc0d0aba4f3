"""Client CPU of an upload on loopback: our engine against icp-py-core's default Agent, same run, same icsim.

icsim runs as a subprocess with instant blocks, so its CPU is not this process's. Our engine uploads a
~200 MB GGUF-like file to llama_cpp (window of concurrent chunks, journal, read-back verification); the
baseline sends the same chunks one after another with icp-py-core's `Agent.update` (its documented way:
typed Candid args, a fresh HTTP client per request, certificates verified through the blst shim with
icsim's root key). Client CPU is user + system time of this process (getrusage), split into the bytes
phase (first chunk signed to last chunk acknowledged) and the read-back phase (to the verified event).
Prints MB per client CPU second for each phase and overall, wall MB/s, and the ratio against the baseline
(target: ours >= 150 MB per client CPU second overall).

    .venv/bin/python bench/upload_loopback.py [--size-mb 200] [--baseline-mb 60] [--window 12]
                                              [--chunk-size N]
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ic_calls import Emulator, start_icsim  # noqa: E402
from pipeline.ic.bls import provide_blst_for_icp_py_core  # noqa: E402
from pipeline.ic.client import IcClient  # noqa: E402
from pipeline.ic.identity import load_identity  # noqa: E402
from pipeline.ic.network import Network  # noqa: E402
from pipeline.targets.profile import load_profile  # noqa: E402
from pipeline.upload.engine import UploadEngine  # noqa: E402
from pipeline.upload.memory import keep_chunk_buffers  # noqa: E402
from pipeline.upload.plan import LocalFile, chunk_size_for, plan_chunks  # noqa: E402
from pipeline.upload.progress import UploadProgress  # noqa: E402
from pipeline.upload.request import UploadFile, UploadRequest  # noqa: E402
from tests.fixtures_upload import kind_with_chunk_size, write_gguf  # noqa: E402

TARGET_CPU_MB_PER_S = 150.0


@dataclass(frozen=True)
class Clocks:
    wall_s: float
    user_s: float
    sys_s: float
    page_faults: int

    @staticmethod
    def now() -> Clocks:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return Clocks(time.perf_counter(), usage.ru_utime, usage.ru_stime, usage.ru_minflt)


@dataclass(frozen=True)
class Phase:
    name: str
    total_bytes: int
    start: Clocks
    end: Clocks

    @property
    def wall_s(self) -> float:
        return self.end.wall_s - self.start.wall_s

    @property
    def cpu_s(self) -> float:
        return self.end.user_s + self.end.sys_s - self.start.user_s - self.start.sys_s

    @property
    def wall_mb_per_s(self) -> float:
        return self.total_bytes / self.wall_s / 1e6

    @property
    def cpu_mb_per_s(self) -> float:
        return self.total_bytes / self.cpu_s / 1e6

    def line(self) -> str:
        system = self.end.sys_s - self.start.sys_s
        faults = self.end.page_faults - self.start.page_faults
        return (
            f"  {self.name:26s} {self.total_bytes / 1e6:4.0f} MB {self.wall_s:6.2f} s wall "
            f"{self.wall_mb_per_s:6.1f} MB/s  {self.cpu_s:5.2f} s CPU ({system:4.2f} sys, {faults:6d} flt) "
            f"{self.cpu_mb_per_s:6.1f} MB/CPU-s"
        )


def ours(
    emulator: Emulator, model: Path, sha256: str, workspace: Path, window: int, kind: str | Path
) -> list[Phase]:
    """The engine's bytes phase (plan event to last chunk) and read-back phase (to the verified event)."""
    stamps: dict[str, Clocks] = {}

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "plan":
            stamps["start"] = Clocks.now()
        elif event["event"] == "chunk":
            stamps["last_chunk"] = Clocks.now()
        elif event["event"] == "verify" and event.get("ok"):
            stamps["verified"] = Clocks.now()

    network = Network("icsim", emulator.url, is_mainnet=False)
    identity = load_identity(pem=emulator.identity_pem)
    request = UploadRequest(
        profile=load_profile(kind),
        canister_id=emulator.canister_id,
        files=(UploadFile("model", model, "models/loopback.gguf", sha256),),
        workspace_root=workspace,
        window=window,
        run_steps=False,
    )
    with IcClient(network, identity, root_key=emulator.root_key) as client:
        report = UploadEngine(client, request, UploadProgress(on_event, bar=False)).run()
    if report.chunks_resent:
        print(f"  (ours resent {report.chunks_resent} chunks)")
    size = model.stat().st_size
    start, sent, verified = stamps["start"], stamps["last_chunk"], stamps["verified"]
    return [
        Phase("ours: send", size, start, sent),
        Phase("ours: read back", size, sent, verified),
        Phase("ours: overall", size, start, verified),
    ]


def agent_default(emulator: Emulator, model: Path, chunk_size: int, limit: int) -> Phase:
    """icp-py-core's Agent.update, one chunk after another, each waited for."""
    import icp_certificate.certificate as certificate
    from icp_agent import Agent, Client
    from icp_identity import Identity

    provide_blst_for_icp_py_core()
    certificate.IC_ROOT_KEY = emulator.root_key  # the only key icp-py-core verifies with
    agent = Agent(Identity.from_pem(emulator.identity_pem.read_text()), Client(emulator.url))
    types = load_profile("llama_cpp").service.methods["file_upload_chunk"].args  # type: ignore[union-attr]
    sent = 0
    with LocalFile(model) as local:
        chunks = [c for c in plan_chunks(local.size, chunk_size) if c.offset < limit]
        start = Clocks.now()
        for chunk in chunks:
            value = {
                "filename": "models/agent.gguf",
                "chunk": local.read(chunk.offset, chunk.length),
                "chunksize": chunk.length,
                "offset": chunk.offset,
            }
            agent.update(emulator.canister_id, "file_upload_chunk", [{"type": types[0], "value": value}])
            sent += chunk.length
    return Phase("icp-py-core Agent.update", sent, start, Clocks.now())


def main() -> None:
    keep_chunk_buffers()  # as `prep upload` does for its process
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--baseline-mb", type=int, default=60)
    parser.add_argument("--window", type=int, default=12)
    parser.add_argument("--chunk-size", type=int, default=0, help="override the profile's max chunk size")
    args = parser.parse_args()
    emulator = start_icsim()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model = write_gguf(Path(tmp) / "loopback.gguf", args.size_mb * 1_000_000)
            sha256 = hashlib.sha256(model.read_bytes()).hexdigest()
            kind: str | Path = "llama_cpp"
            if args.chunk_size:
                kind = kind_with_chunk_size("llama_cpp", Path(tmp) / "kind", args.chunk_size)
            mine = ours(emulator, model, sha256, Path(tmp) / "work", args.window, kind)
            chunk_size = chunk_size_for(load_profile(kind).max_chunk_size, concurrent=True)
            base = agent_default(emulator, model, chunk_size, args.baseline_mb * 1_000_000)
    finally:
        emulator.process.terminate()
        emulator.process.wait(timeout=30)
    print(f"loopback upload to llama_cpp on icsim (subprocess, instant blocks), {chunk_size:,} B chunks")
    print(f"ours: UploadEngine, window {args.window}; baseline: sequential, same chunks")
    for phase in (*mine, base):
        print(phase.line())
    overall = mine[-1]
    print(
        f"ratio ours/agent: client CPU {overall.cpu_mb_per_s / base.cpu_mb_per_s:.2f}x, "
        f"wall {overall.wall_mb_per_s / base.wall_mb_per_s:.2f}x; "
        f"ours {overall.cpu_mb_per_s:.0f} MB/CPU-s overall (target >= {TARGET_CPU_MB_PER_S:.0f})"
    )


if __name__ == "__main__":
    main()
