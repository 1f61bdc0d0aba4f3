"""Run the emulator on its own: `python -m tests.icsim --port 4943`."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from tests.icsim.canisters.llama_cpp_releases import INTERFACES as LLAMA_CPP_INTERFACES
from tests.icsim.sim import IcSim


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
    args = parser.parse_args(argv)
    sim = IcSim(
        block_interval=args.block_interval,
        block_ingress_bytes=args.block_ingress_bytes,
        latency=args.latency,
        controllers=args.controller,
        host=args.host,
        port=args.port,
        llama_cpp_interface=args.llama_cpp_interface,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sim.start()
    try:
        for kind, principal in sim.canister_ids.items():
            print(f"{kind} {principal}")
        print(f"url {sim.url}")
        print(f"identity {sim.dev_identity_pem}")
        print(f"principal {sim.dev_principal}")
        print(f"root_key {sim.root_key.hex()}")
        sys.stdout.flush()
        stop.wait()
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
