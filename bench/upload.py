"""Upload throughput on icsim with mainnet-like blocks: our engine vs a sequential one-chunk-per-call uploader
(the canister's own way).

Blocks every 1 s with at most 4 MiB of ingress, ~2 s from execution to a certified reply. Ours sends a
200 MB GGUF to llama_cpp (window of concurrent chunks, read-back verification); the baseline does what
the canister's own uploader does (2,000,000-byte chunks, one call at a time, each signed once and waited
for) on its first 20 MB, in the same run. Prints both rates, the ratio (target >= 6) and ours as a share
of the block ingress ceiling (target >= 80%).

    .venv/bin/python -m bench.upload [--size-mb 200] [--baseline-mb 20] [--window 12] [--latency 2]
                                     [--chunk-size 1900000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.ic import candid
from pipeline.ic.client import IcClient
from pipeline.ic.identity import load_identity
from pipeline.ic.network import Network
from pipeline.targets.profile import load_profile
from pipeline.upload.engine import UploadEngine
from pipeline.upload.memory import keep_chunk_buffers
from pipeline.upload.progress import UploadProgress
from pipeline.upload.request import UploadFile, UploadRequest
from tests.fixtures_upload import kind_with_chunk_size, write_gguf
from tests.icsim import IcSim

BLOCK_INTERVAL_S = 1.0
BLOCK_INGRESS_BYTES = 4 * 1024 * 1024
LATENCY_S = 2.0
BASELINE_CHUNK = 2_000_000


def ours(
    client: IcClient, canister_id: str, model: Path, workspace: Path, window: int, kind: str | Path
) -> dict[str, float]:
    """Our engine; the rate counts from the first chunk sent to the last acknowledged (bytes phase)."""
    stamps: dict[str, float] = {}

    def on_event(event: dict[str, Any]) -> None:
        now = time.monotonic()
        if event["event"] == "plan":
            stamps["start"] = now
        elif event["event"] == "chunk":
            stamps["last_chunk"] = now
        elif event["event"] == "verify" and event.get("ok"):
            stamps["verified"] = now

    request = UploadRequest(
        profile=load_profile(kind),
        canister_id=canister_id,
        files=(UploadFile("model", model, "models/bench.gguf"),),
        workspace_root=workspace,
        window=window,
        run_steps=False,
    )
    UploadEngine(client, request, UploadProgress(on_event, bar=False)).run()
    size = model.stat().st_size
    return {
        "bytes": size,
        "bytes_s": stamps["last_chunk"] - stamps["start"],
        "verified_s": stamps["verified"] - stamps["start"],
    }


def baseline(client: IcClient, canister_id: str, model: Path, limit: int) -> dict[str, float]:
    """One 2,000,000-byte chunk per call, sequential, each waited for: the canister's own uploader."""
    types = list(load_profile("llama_cpp").service.methods["file_upload_chunk"].args)  # type: ignore[union-attr]
    started = time.monotonic()
    sent = 0
    with open(model, "rb") as f:
        while sent < limit:
            chunk = f.read(min(BASELINE_CHUNK, limit - sent))
            if not chunk:
                break
            record = {
                "filename": "models/baseline.gguf",
                "chunk": chunk,
                "chunksize": len(chunk),
                "offset": sent,
            }
            arg = candid.encode(types, [record])
            client.call(canister_id, "file_upload_chunk", arg)
            sent += len(chunk)
    return {"bytes": sent, "seconds": time.monotonic() - started}


def main() -> None:
    keep_chunk_buffers()  # as `prep upload` does for its process
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--baseline-mb", type=int, default=20)
    parser.add_argument("--window", type=int, default=12)
    parser.add_argument("--chunk-size", type=int, default=0, help="override the profile's max chunk size")
    parser.add_argument("--latency", type=float, default=LATENCY_S, help="seconds from execution to reply")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        IcSim(BLOCK_INTERVAL_S, BLOCK_INGRESS_BYTES, args.latency) as sim,
    ):
        model = write_gguf(Path(tmp) / "bench.gguf", args.size_mb * 1_000_000)
        network = Network("icsim", sim.url, is_mainnet=False)
        with IcClient(network, load_identity(pem=sim.dev_identity_pem), root_key=sim.root_key) as client:
            cid = sim.canister_ids["llama_cpp"]
            kind = (
                kind_with_chunk_size("llama_cpp", Path(tmp) / "kind", args.chunk_size)
                if args.chunk_size
                else "llama_cpp"
            )
            mine = ours(client, cid, model, Path(tmp) / "work", args.window, kind)
            base = baseline(client, cid, model, args.baseline_mb * 1_000_000)
    ours_rate = mine["bytes"] / mine["bytes_s"] / 1e6
    ours_verified = mine["bytes"] / mine["verified_s"] / 1e6
    base_rate = base["bytes"] / base["seconds"] / 1e6
    ceiling = BLOCK_INGRESS_BYTES / BLOCK_INTERVAL_S / 1e6
    print(f"icsim blocks: {BLOCK_INTERVAL_S:.0f} s, {BLOCK_INGRESS_BYTES:,} B, {args.latency:.1f} s latency")
    print(f"ours:     {mine['bytes'] / 1e6:.0f} MB in {mine['bytes_s']:.1f} s = {ours_rate:.2f} MB/s (bytes)")
    print(f"          {ours_verified:.2f} MB/s with read-back verification ({mine['verified_s']:.1f} s)")
    base_mb = base["bytes"] / 1e6
    print(
        f"baseline: {base_mb:.0f} MB in {base['seconds']:.1f} s = {base_rate:.2f} MB/s (one call at a time)"
    )
    print(f"ratio ours/baseline: {ours_rate / base_rate:.2f}x (target >= 6)")
    share = 100 * ours_rate / ceiling
    print(f"ours vs block ingress ceiling ({ceiling:.2f} MB/s): {share:.0f}% (target >= 80%)")


if __name__ == "__main__":
    main()
