"""Run the emulator on its own: `python -m tests.icsim --port 4943`."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from tests.icsim.canisters.llama_cpp_releases import INTERFACES as LLAMA_CPP_INTERFACES
from tests.icsim.project import write_project
from tests.icsim.replica import DEFAULT_INGRESS_POOL_BYTES
from tests.icsim.sim import IcSim
from tests.icsim.system import DEFAULT_CYCLES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.icsim", description="IC replica emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--controller", action="append", default=None, metavar="PRINCIPAL",
        help="controller of every canister (repeatable); default: a fresh dev identity",
    )  # fmt: skip
    parser.add_argument("--block-interval", type=float, default=0.0, help="seconds per block (0 = instant)")
    parser.add_argument("--block-ingress-bytes", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added before a call is answered")
    parser.add_argument(
        "--llama-cpp-interface", choices=sorted(LLAMA_CPP_INTERFACES), default="current",
        help="host the interface of an older llama_cpp_canister release (v0.14: no token counts; v0.5: "
        "also no filesystem_file_size)",
    )  # fmt: skip
    parser.add_argument(
        "--subnets", type=int, default=1, help="subnets; all but subnet 0 sign via a delegation"
    )
    parser.add_argument(
        "--canisters-per-subnet", type=int, default=1, metavar="M", help="llama_cpp canisters on each subnet"
    )
    parser.add_argument(
        "--background-load", type=float, default=0.0, metavar="F",
        help="share (0-0.9) of every block's ingress taken by other users",
    )  # fmt: skip
    parser.add_argument("--cycles", type=int, default=DEFAULT_CYCLES, help="each canister's starting balance")
    parser.add_argument(
        "--ingress-pool-bytes", type=int, default=DEFAULT_INGRESS_POOL_BYTES, metavar="B",
        help="a subnet refuses new calls (HTTP 503, overloaded) while this many bytes wait for a block",
    )  # fmt: skip
    parser.add_argument(
        "--latency-jitter", type=float, default=0.0, metavar="S",
        help="each call's latency is drawn uniformly from --latency ± S",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the latency draws")
    parser.add_argument(
        "--project", type=Path, metavar="DIR",
        help="write dfx.json, .dfx/local/canister_ids.json and identity.pem into DIR, so that prep run there "
        "with --network local --canister KIND --pem identity.pem talks to this emulator",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.subnets < 1 or args.canisters_per_subnet < 1:
        parser.error("--subnets and --canisters-per-subnet must be at least 1")
    if not 0.0 <= args.background_load <= 0.9:
        parser.error("--background-load must be within 0..0.9")
    if args.ingress_pool_bytes < 1 or args.latency_jitter < 0:
        parser.error("--ingress-pool-bytes must be positive and --latency-jitter not negative")
    sim = IcSim(
        block_interval=args.block_interval,
        block_ingress_bytes=args.block_ingress_bytes,
        latency=args.latency,
        controllers=args.controller,
        host=args.host,
        port=args.port,
        llama_cpp_interface=args.llama_cpp_interface,
        subnets=args.subnets,
        canisters_per_subnet=args.canisters_per_subnet,
        background_load=args.background_load,
        cycles=args.cycles,
        ingress_pool_bytes=args.ingress_pool_bytes,
        latency_jitter=args.latency_jitter,
        seed=args.seed,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sim.start()
    try:
        for hosted in sim.hosted:
            print(f"{hosted.kind} {hosted.principal} {hosted.subnet}")
        print(f"url {sim.url}")
        print(f"identity {sim.dev_identity_pem}")
        print(f"principal {sim.dev_principal}")
        print(f"root_key {sim.root_key.hex()}")
        if args.project is not None:
            write_project(args.project, sim.url, sim.canister_ids, sim.dev_identity_pem)
            print(f"project {args.project.resolve()}")
        sys.stdout.flush()
        stop.wait()
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
