"""Run HubSim on its own for demos: `python -m tests.hubsim --port N --tiny-world DIR`.

Prints `HF_ENDPOINT <url>` and, with --tiny-world, `RECIPES <dir>`, then serves until killed.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from tests.hubsim.server import HubSim
from tests.hubsim.world import build_tiny_world


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.hubsim", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--tiny-world", type=Path, help="serve the shipped recipes' repos with tiny models")
    args = parser.parse_args()
    sim = HubSim(port=args.port)
    sim.start()
    print(f"HF_ENDPOINT {sim.url}", flush=True)
    if args.tiny_world is not None:
        world = build_tiny_world(sim, args.tiny_world)
        print(f"RECIPES {world.recipes_dir}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        sim.stop()


if __name__ == "__main__":
    main()
