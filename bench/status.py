"""`prep status` of 12 llama_cpp canisters on 3 subnets (icsim, 1 s blocks, 2 s latency): the canisters
asked one after another against all at once (pipeline.fleet.status.collect_status), in the same run.

Each canister costs about one block plus its certification latency (canister_status is an update
call), so asking them concurrently should take about one canister's time. Prints both times and the
ratio; the target is >= 8x.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.fleet.status import StatusOptions, StatusTarget, canister_state, collect_status  # noqa: E402
from tests.fixtures_upload import icsim_client  # noqa: E402
from tests.icsim import IcSim  # noqa: E402

SUBNETS, PER_SUBNET = 3, 4
TARGET_RATIO = 8.0


def main() -> int:
    with (
        IcSim(subnets=SUBNETS, canisters_per_subnet=PER_SUBNET, block_interval=1.0, latency=2.0) as sim,
        tempfile.TemporaryDirectory(prefix="prep-bench-status-") as work,
    ):
        ids = [h.principal for h in sim.hosted if h.kind == "llama_cpp"]
        clients = [icsim_client(sim, timeout=60) for _ in ids]
        targets = [StatusTarget(cid, cid, client) for cid, client in zip(ids, clients, strict=True)]
        options = StatusOptions(Path(work))
        started = time.monotonic()
        serial = [canister_state(target, options) for target in targets]
        serial_s = time.monotonic() - started
        started = time.monotonic()
        concurrent = collect_status(targets, options)
        concurrent_s = time.monotonic() - started
        for client in clients:
            client.close()
    errors = [s.error for s in serial + concurrent if s.error]
    ratio = serial_s / concurrent_s
    print(
        f"status of {len(ids)} canisters on {SUBNETS} subnets: one after another {serial_s:.1f} s, "
        f"concurrently {concurrent_s:.1f} s: {ratio:.1f}x (target >= {TARGET_RATIO:g}x)"
    )
    if errors:
        print(f"errors: {errors}", file=sys.stderr)
        return 1
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
