"""Upload throughput on icsim with mainnet-like blocks, as a sweep of latency x background load.

Blocks every 1 s with at most 4 MiB of ingress (less the background load's share), each call's latency
drawn from LATENCY ± jitter, and a bounded ingress pool (new calls refused "overloaded" while it is
full). Ours sends a GGUF to llama_cpp with the default adaptive window (or `--window N`: a fixed window
of N, to compare); the baseline does what the canister's own uploader does (2,000,000-byte chunks, one
call at a time, each waited for) on a sample of a few calls at each latency, in the same run.

How it counts: "steady" is the rate at which the middle 60% of the file's chunks were acknowledged (from
the 20% to the 80% acknowledgement: past the startup of the window, before the tail); "whole" is from the
first chunk sent to the last acknowledged (it includes chunk 0 sent alone and two round trips no window
can hide). The ceiling is our share of block ingress per second: 4 MiB/s x (1 - background load); the
~1 MB chunks of a concurrent upload tile half a block (pipeline/upload/plan.py). "queued" is what the subnet
left waiting after each block took its share, in 4 MiB blocks: the steady 90th percentile (middle 60% of
the blocks) and the peak (startup included).

    .venv/bin/python -m bench.upload [--size-mb 150] [--latency S] [--background-load F] [--window N]
                                     [--jitter S] [--pool-mib M] [--baseline-calls 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.ic import candid
from pipeline.ic.client import IcClient
from pipeline.ic.identity import load_identity
from pipeline.ic.network import Network
from pipeline.targets.profile import load_profile
from pipeline.upload.engine import UploadEngine
from pipeline.upload.flow import FlowControl
from pipeline.upload.memory import keep_chunk_buffers
from pipeline.upload.progress import UploadProgress
from pipeline.upload.request import DEFAULT_WINDOW, UploadFile, UploadRequest
from tests.fixtures_upload import write_gguf
from tests.icsim import IcSim

BLOCK_INTERVAL_S = 1.0
BLOCK_INGRESS_BYTES = 4 * 1024 * 1024
LATENCIES_S = (1.0, 2.0, 4.0, 6.0)
BACKGROUND_LOADS = (0.0, 0.5)
JITTER_S = 0.5
POOL_MIB = 32  # a bounded ingress pool: ~8 blocks of ingress waiting
BASELINE_CHUNK = 2_000_000


@dataclass
class Cell:
    latency: float
    load: float
    steady: float  # bytes/s
    whole: float
    ceiling: float
    flow: dict[str, Any]
    queued_p90: float  # blocks
    queued_peak: float
    refused: int
    baseline: float | None = None


def ours(sim: IcSim, model: Path, workspace: Path, window: int | None) -> tuple[float, float, dict[str, Any]]:
    """Our engine: (steady rate, whole rate, flow stats)."""
    acks: list[float] = []
    stamps: dict[str, float] = {}

    def on_event(event: dict[str, Any]) -> None:
        now = time.monotonic()
        if event["event"] == "plan":
            stamps["start"] = now
        elif event["event"] == "chunk":
            acks.append(now)

    flow = FlowControl(window, adaptive=False) if window else FlowControl(DEFAULT_WINDOW)
    network = Network("icsim", sim.url, is_mainnet=False)
    with IcClient(network, load_identity(pem=sim.dev_identity_pem), root_key=sim.root_key) as client:
        request = UploadRequest(
            profile=load_profile("llama_cpp"),
            canister_id=sim.canister_ids["llama_cpp"],
            files=(UploadFile("model", model, "models/bench.gguf"),),
            workspace_root=workspace,
            run_steps=False,
            flow=flow,
        )
        report = UploadEngine(client, request, UploadProgress(on_event, bar=False)).run()
    size = model.stat().st_size
    chunk = report.bytes_sent / max(report.chunks_sent, 1)
    times = sorted(acks)
    low, high = int(0.2 * len(times)), int(0.8 * len(times))
    steady = (high - low) * chunk / (times[high] - times[low])
    whole = size / (times[-1] - stamps["start"])
    return steady, whole, report.flow or {}


def baseline(sim: IcSim, model: Path, calls: int) -> float:
    """One 2,000,000-byte chunk per call, sequential, each waited for: the canister's own uploader."""
    types = list(load_profile("llama_cpp").service.methods["file_upload_chunk"].args)  # type: ignore[union-attr]
    network = Network("icsim", sim.url, is_mainnet=False)
    cid = sim.canister_ids["llama_cpp"]
    with (
        IcClient(network, load_identity(pem=sim.dev_identity_pem), root_key=sim.root_key) as client,
        open(model, "rb") as f,
    ):
        started = time.monotonic()
        for n in range(calls):
            record = {
                "filename": "models/baseline.gguf",
                "chunk": f.read(BASELINE_CHUNK),
                "chunksize": BASELINE_CHUNK,
                "offset": n * BASELINE_CHUNK,
            }
            client.call(cid, "file_upload_chunk", candid.encode(types, [record]))
        return calls * BASELINE_CHUNK / (time.monotonic() - started)


def run_cell(args: argparse.Namespace, model: Path, tmp: Path, latency: float, load: float) -> Cell:
    with IcSim(
        BLOCK_INTERVAL_S, BLOCK_INGRESS_BYTES, latency, background_load=load,
        latency_jitter=args.jitter, ingress_pool_bytes=args.pool_mib * 1024 * 1024,
    ) as sim:  # fmt: skip
        workspace = tmp / f"work-{latency}-{load}"
        steady, whole, flow = ours(sim, model, workspace, args.window)
        per_block = sim.blocks.our_bytes
        middle = sim.replica.block_log[len(sim.replica.block_log) // 5 : 4 * len(sim.replica.block_log) // 5]
        queued = sorted(b.queued_bytes / BLOCK_INGRESS_BYTES for b in middle) or [0.0]
        cell = Cell(
            latency, load, steady, whole, per_block / BLOCK_INTERVAL_S, flow,
            queued[int(0.9 * (len(queued) - 1))], sim.peak_queued_bytes / BLOCK_INGRESS_BYTES,
            sim.refused_for_load,
        )  # fmt: skip
        if load == 0.0 and args.baseline_calls:
            cell.baseline = baseline(sim, model, args.baseline_calls)
    return cell


def show(cells: list[Cell], window: int | None, *, header: bool = True) -> None:
    if header:
        mode = f"fixed window {window}" if window else f"adaptive window (at most {DEFAULT_WINDOW})"
        print(f"ours: {mode}; blocks {BLOCK_INTERVAL_S:.0f} s, {BLOCK_INGRESS_BYTES:,} B", flush=True)
        print(
            "latency  load  steady MB/s  % ceiling  whole MB/s  % ceiling  window peak/final  min rtt  "
            "queued p90/peak  refused  baseline MB/s  ratio"
        )
    baselines = {c.latency: c.baseline for c in cells if c.baseline}
    for c in cells:
        base = baselines.get(c.latency)
        rtt = c.flow.get("min_rtt_s")
        print(
            f"{c.latency:5.1f} s  {c.load:4.1f}  {c.steady / 1e6:11.2f}  {100 * c.steady / c.ceiling:8.1f}%  "
            f"{c.whole / 1e6:10.2f}  {100 * c.whole / c.ceiling:8.1f}%  "
            f"{c.flow.get('peak_window', c.flow.get('window')):>11}/{c.flow.get('window'):<5}  "
            f"{'-' if rtt is None else f'{rtt:.2f} s':>7}  {c.queued_p90:7.1f}/{c.queued_peak:<7.1f}  "
            f"{c.refused:7d}  {'-' if base is None else f'{base / 1e6:.2f}':>13}  "
            f"{'-' if base is None else f'{c.steady / base:.1f}x':>5}",
            flush=True,
        )


def main() -> None:
    keep_chunk_buffers()  # as `prep upload` does for its process
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=150)
    parser.add_argument("--latency", type=float, help="one latency instead of the sweep's 1, 2, 4, 6 s")
    parser.add_argument("--background-load", type=float, help="one load instead of the sweep's 0 and 0.5")
    parser.add_argument("--window", type=int, help="a fixed window of N calls instead of the adaptive one")
    parser.add_argument("--jitter", type=float, default=JITTER_S, help="each call's latency ± this")
    parser.add_argument("--pool-mib", type=int, default=POOL_MIB, help="the subnet's ingress pool bound")
    parser.add_argument("--baseline-calls", type=int, default=4, help="sequential calls timed per latency")
    args = parser.parse_args()
    latencies = (args.latency,) if args.latency is not None else LATENCIES_S
    loads = (args.background_load,) if args.background_load is not None else BACKGROUND_LOADS
    cells = []
    with tempfile.TemporaryDirectory() as tmp:
        model = write_gguf(Path(tmp) / "bench.gguf", args.size_mb * 1_000_000)
        for latency in latencies:
            for load in loads:
                cells.append(run_cell(args, model, Path(tmp), latency, load))
                show(cells[-1:], args.window, header=len(cells) == 1)
    print()
    show(cells, args.window)


if __name__ == "__main__":
    main()
