"""A fleet upload on icsim with mainnet-like subnets: `prep upload` into 12 llama_cpp canisters on 3 subnets
(4 each) vs the operators' serial loop, measured in the same run.

Blocks every 1 s with at most 4 MiB of ingress per subnet, 4 s from execution to a certified reply, a
100 MB GGUF. prep runs as its own process (`python -m pipeline upload --canister ... x12 --json`), as a
user runs it, with one adaptive window shared by each subnet's canisters. The baseline is the operators'
way: one canister after another, sequential 2,000,000-byte calls each waited for; it is timed on the
first `--sample-mb` MB of each canister and extrapolated to the whole model (the output says so).
Printed: the fleet's aggregate MB/s and its share of the sum of the 3 subnets' ceilings, over the bytes
phase (first plan to last chunk acknowledged) and over the whole run (process start to exit, including
the read-back verification and the load); the ratio to the serial loop (targets >= 85%, >= 20x); and the
peak RSS of prep for 1 canister, 4 on one subnet and 12 on 3 subnets with a smaller file (each canister
reads its chunks with pread from the page cache: the file is read from disk once and never held; chunks
in flight are bounded by the subnets' windows).

`--kill-mid` instead runs one prep process per subnet, kill -9s one of them half-way through its chunks,
reruns it, and checks that every canister ends byte-identical to the model.

    .venv/bin/python -m bench.fleet [--size-mb 100] [--sample-mb 4] [--latency 4] [--kill-mid]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.ic import candid
from pipeline.ic.client import IcClient
from pipeline.ic.identity import load_identity
from pipeline.ic.network import Network
from pipeline.targets.profile import load_profile
from tests.fixtures_upload import LLAMA_CHUNK, write_gguf
from tests.icsim import IcSim

SUBNETS = 3
PER_SUBNET = 4
BLOCK_INTERVAL_S = 1.0
BLOCK_INGRESS_BYTES = 4 * 1024 * 1024
BASELINE_CHUNK = 2_000_000
REMOTE = "models/model.gguf"


@dataclass
class PrepRun:
    """One `prep upload` process: its exit, wall time, bytes phase, bytes sent and peak RSS."""

    code: int = 0
    seconds: float = 0.0
    bytes_phase_s: float = 0.0
    bytes_sent: int = 0
    peak_rss_mb: float = 0.0
    events: list[dict] = field(default_factory=list)


def prep_upload(
    sim: IcSim, model: Path, canisters: Sequence[str], workdir: Path, *extra: str, kill_after_chunks: int = 0
) -> PrepRun:
    args = [
        sys.executable, "-m", "pipeline", "upload", "--file", str(model), "--kind", "llama_cpp",
        "--network", sim.url, "--pem", str(sim.dev_identity_pem), "--yes", "--json", *extra,
    ]  # fmt: skip
    for cid in canisters:
        args += ["--canister", cid]
    env = dict(os.environ, PREP_WORKDIR=str(workdir))
    run = PrepRun()
    started = time.monotonic()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    peaks: list[int] = []
    watch = threading.Thread(target=watch_peak_rss, args=(proc.pid, peaks), daemon=True)
    watch.start()
    first_plan = last_chunk = started
    chunks = 0
    for line in proc.stdout:
        event = json.loads(line)
        now = time.monotonic()
        if event["event"] == "plan" and first_plan == started:
            first_plan = now
        elif event["event"] == "chunk":
            last_chunk, chunks = now, chunks + 1
            if kill_after_chunks and chunks == kill_after_chunks:
                os.kill(proc.pid, signal.SIGKILL)
        elif event["event"] == "result":
            run.bytes_sent = event["bytes_sent"]
        run.events.append(event)
    run.code = proc.wait()
    watch.join()
    run.seconds = time.monotonic() - started
    run.bytes_phase_s = last_chunk - first_plan
    run.peak_rss_mb = peaks[-1] / 1024 if peaks else 0.0
    return run


def watch_peak_rss(pid: int, peaks: list[int]) -> None:
    """Appends the process's VmHWM (kB) until it exits. Not ru_maxrss: on Linux a child's counts the
    forked copy of this (large) process from before its exec."""
    while True:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        found = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")]
        if not found:  # a zombie: it has exited
            return
        peaks.append(int(found[0]))
        time.sleep(0.05)


def serial_loop_sample(sim: IcSim, canisters: Sequence[str], model: Path, sample: int) -> float:
    """Seconds the operators' loop takes for `sample` bytes into each canister, one after another."""
    types = list(load_profile("llama_cpp").service.methods["file_upload_chunk"].args)  # type: ignore[union-attr]
    network = Network("icsim", sim.url, is_mainnet=False)
    started = time.monotonic()
    with IcClient(network, load_identity(pem=sim.dev_identity_pem), root_key=sim.root_key) as client:
        for cid in canisters:
            sent = 0
            with open(model, "rb") as f:
                while sent < sample:
                    chunk = f.read(min(BASELINE_CHUNK, sample - sent))
                    record = {
                        "filename": "models/serial.gguf",
                        "chunk": chunk,
                        "chunksize": len(chunk),
                        "offset": sent,
                    }
                    client.call(cid, "file_upload_chunk", candid.encode(types, [record]))
                    sent += len(chunk)
    return time.monotonic() - started


def all_identical(sim: IcSim, canisters: Sequence[str], model: Path) -> bool:
    want = hashlib.sha256(model.read_bytes()).hexdigest()
    return all(hashlib.sha256(sim.canister(c).file_bytes(REMOTE)).hexdigest() == want for c in canisters)


def fleet_of(sim: IcSim) -> list[str]:
    return [h.principal for h in sim.hosted if h.kind == "llama_cpp"]


def peak_rss(sim: IcSim, canisters: Sequence[str], tmp: Path, size_mb: int) -> float:
    """Peak RSS of a prep uploading a `size_mb` file into `canisters` (RSS depends on the chunks in
    flight, not on the file's size: a smaller file keeps the bench short)."""
    model = write_gguf(tmp / f"rss-{len(canisters)}.gguf", size_mb * 1_000_000)
    run = prep_upload(sim, model, canisters, tmp / f"work-rss-{len(canisters)}", "--remote", model.name)
    assert run.code == 0, "prep failed"
    return run.peak_rss_mb


def rss_only(sim: IcSim, tmp: Path, rss_mb: int) -> None:
    canisters = fleet_of(sim)
    subnet_0 = [c for c in canisters if sim.subnet_of(c) == sim.subnet_principal(0)]
    for group in (canisters[:1], subnet_0, canisters):
        peak = peak_rss(sim, group, tmp, rss_mb)
        print(f"peak RSS of prep, {len(group)} canister(s), {rss_mb} MB file: {peak:.0f} MB")


def measure(sim: IcSim, model: Path, tmp: Path, sample_mb: int, rss_mb: int) -> None:
    canisters = fleet_of(sim)
    size = model.stat().st_size
    ceiling = SUBNETS * BLOCK_INGRESS_BYTES / BLOCK_INTERVAL_S / 1e6
    subnet_0 = [c for c in canisters if sim.subnet_of(c) == sim.subnet_principal(0)]
    rss = {len(group): peak_rss(sim, group, tmp, rss_mb) for group in (canisters[:1], subnet_0, canisters)}
    fleet = prep_upload(sim, model, canisters, tmp / "work-fleet")
    assert fleet.code == 0, "prep failed"
    identical = all_identical(sim, canisters, model)
    sample = sample_mb * 1_000_000
    sample_s = serial_loop_sample(sim, canisters, model, sample)
    serial_s = sample_s * size / sample
    bytes_rate = fleet.bytes_sent / fleet.bytes_phase_s / 1e6
    whole_rate = fleet.bytes_sent / fleet.seconds / 1e6
    print(
        f"icsim: {SUBNETS} subnets x {PER_SUBNET} llama_cpp canisters; blocks {BLOCK_INTERVAL_S:.0f} s, "
        f"{BLOCK_INGRESS_BYTES:,} B per subnet; {sim.blocks.latency:.1f} s latency; model {size / 1e6:.0f} MB"
    )
    print(f"ceiling: sum of {SUBNETS} subnets = {ceiling:.2f} MB/s")
    print(
        f"fleet (prep, one process): {fleet.bytes_sent / 1e6:.0f} MB; "
        f"bytes phase {fleet.bytes_phase_s:.1f} s "
        f"= {bytes_rate:.2f} MB/s = {100 * bytes_rate / ceiling:.0f}% of the ceiling"
    )
    print(
        f"  whole run (start to exit, read-back verify and load included) {fleet.seconds:.1f} s = "
        f"{whole_rate:.2f} MB/s = {100 * whole_rate / ceiling:.0f}% of the ceiling (target >= 85%)"
    )
    print(
        f"serial loop (measured on the first {sample_mb} MB of each of {len(canisters)} canisters: "
        f"{sample_s:.1f} s; extrapolated to {size / 1e6:.0f} MB each): {serial_s:.0f} s"
    )
    print(f"ratio serial loop / fleet whole run: {serial_s / fleet.seconds:.1f}x (target >= 20x)")
    print(
        f"peak RSS of prep with a {rss_mb} MB file: 1 canister {rss[1]:.0f} MB, "
        f"{len(subnet_0)} on one subnet "
        f"{rss[len(subnet_0)]:.0f} MB, {len(canisters)} on {SUBNETS} subnets {rss[len(canisters)]:.0f} MB; "
        f"the {size / 1e6:.0f} MB fleet run: {fleet.peak_rss_mb:.0f} MB"
    )
    print(f"every canister byte-identical: {identical}")


def kill_mid(sim: IcSim, model: Path, tmp: Path) -> None:
    """One prep per subnet; the first subnet's is killed half-way and rerun."""
    canisters = fleet_of(sim)
    by_subnet: dict[str, list[str]] = {}
    for cid in canisters:
        by_subnet.setdefault(sim.subnet_of(cid), []).append(cid)
    groups = list(by_subnet.values())
    runs: dict[int, PrepRun] = {}
    half = -(-model.stat().st_size // LLAMA_CHUNK) * len(groups[0]) // 2

    def go(index: int) -> None:
        kill = half if index == 0 else 0
        runs[index] = prep_upload(sim, model, groups[index], tmp / "work-kill", kill_after_chunks=kill)

    started = time.monotonic()
    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(groups))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    killed = runs[0]
    print(f"subnet 0's prep killed with -9 after {half} chunk acknowledgements (exit {killed.code})")
    print(f"other subnets' prep: exit {[runs[i].code for i in range(1, len(groups))]}")
    rerun = prep_upload(sim, model, groups[0], tmp / "work-kill")
    print(
        f"rerun of subnet 0: exit {rerun.code}, {rerun.bytes_sent / 1e6:.1f} MB sent "
        f"(of {len(groups[0]) * model.stat().st_size / 1e6:.0f} MB), {rerun.seconds:.1f} s; "
        f"whole kill-and-rerun {time.monotonic() - started:.1f} s"
    )
    print(f"every canister byte-identical: {all_identical(sim, canisters, model)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--sample-mb", type=int, default=4, help="serial loop: bytes timed per canister")
    parser.add_argument("--rss-mb", type=int, default=20, help="file size of the 1- and 4-canister RSS runs")
    parser.add_argument("--latency", type=float, default=4.0, help="seconds from execution to reply")
    parser.add_argument("--kill-mid", action="store_true", help="kill -9 one subnet's prep half-way, rerun")
    parser.add_argument("--rss-only", action="store_true", help="only the peak RSS runs (1, 4, 12 canisters)")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        IcSim(
            BLOCK_INTERVAL_S,
            BLOCK_INGRESS_BYTES,
            args.latency,
            subnets=SUBNETS,
            canisters_per_subnet=PER_SUBNET,
        ) as sim,
    ):
        model = write_gguf(Path(tmp) / "bench.gguf", args.size_mb * 1_000_000)
        if args.kill_mid:
            kill_mid(sim, model, Path(tmp))
        elif args.rss_only:
            rss_only(sim, Path(tmp), args.rss_mb)
        else:
            measure(sim, model, Path(tmp), args.sample_mb, args.rss_mb)


if __name__ == "__main__":
    main()
