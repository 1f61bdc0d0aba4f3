"""Update-call throughput: pipeline.ic's IcClient against icp-py-core's default Agent, same run, same icsim.

Starts icsim (instant blocks) as a subprocess, then makes N update calls of a 1.9 MB chunk
(llama_cpp `file_upload_chunk`) through each client with the same window of concurrent calls.
Both verify every certificate (icp-py-core through the blst shim, with icsim's root key patched
into its module global, which is what it reads). Prints wall-clock MB/s, client CPU MB/s (bytes per
second of this process's CPU time: the client's own cost, whatever the server's speed) and ratios.

    .venv/bin/python bench/ic_calls.py [--calls 40] [--window 4] [--chunk 1900000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.ic import candid  # noqa: E402
from pipeline.ic.bls import provide_blst_for_icp_py_core  # noqa: E402
from pipeline.ic.client import IcClient  # noqa: E402
from pipeline.ic.identity import load_identity  # noqa: E402
from pipeline.ic.network import Network  # noqa: E402

CHUNK = "record { filename : text; chunk : blob; chunksize : nat64; offset : nat64 }"
RESULT = "variant { Ok : record { filename : text; filesize : nat64; filesha256 : text }; Err : variant { Other : text; StatusCode : nat16 } }"  # noqa: E501


@dataclass
class Emulator:
    process: subprocess.Popen[str]
    url: str
    canister_id: str
    identity_pem: Path
    root_key: bytes


@dataclass(frozen=True)
class Measured:
    name: str
    seconds: float
    cpu_seconds: float
    total_bytes: int

    @property
    def mb_per_s(self) -> float:
        return self.total_bytes / self.seconds / 1e6

    @property
    def cpu_mb_per_s(self) -> float:
        return self.total_bytes / self.cpu_seconds / 1e6


def start_icsim() -> Emulator:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.icsim", "--port", "0"], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    fields: dict[str, str] = {}
    assert process.stdout is not None
    while "root_key" not in fields:
        line = process.stdout.readline()
        if not line:
            raise SystemExit("icsim exited before printing its settings")
        key, _, value = line.strip().partition(" ")
        fields.setdefault(key, value.split(" ")[0])  # canister lines: KIND PRINCIPAL SUBNET
    return Emulator(
        process,
        fields["url"],
        fields["llama_cpp"],
        Path(fields["identity"]),
        bytes.fromhex(fields["root_key"]),
    )


def chunk_arg(data: bytes, filename: str, index: int) -> bytes:
    value = {"filename": filename, "chunk": data, "chunksize": len(data), "offset": index * len(data)}
    return candid.encode([CHUNK], [value])


def measure(name: str, send: Callable[[int], None], calls: int, window: int, chunk_size: int) -> Measured:
    send(0)  # offset 0 starts the file; also warms connections and caches
    wall, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(window) as pool:
        list(pool.map(send, range(1, calls + 1)))
    return Measured(name, time.perf_counter() - wall, time.process_time() - cpu, calls * chunk_size)


def ours(emulator: Emulator, data: bytes) -> tuple[Callable[[int], None], IcClient]:
    client = IcClient(
        Network("icsim", emulator.url, is_mainnet=False), load_identity(pem=emulator.identity_pem)
    )

    def send(index: int) -> None:
        reply = client.call(
            emulator.canister_id, "file_upload_chunk", chunk_arg(data, "bench/ours.bin", index)
        )
        assert "Ok" in candid.decode(reply, [RESULT])[0]

    return send, client


def icp_py_core_default(emulator: Emulator, data: bytes) -> Callable[[int], None]:
    import icp_certificate.certificate as certificate
    from icp_agent import Agent, Client
    from icp_identity import Identity

    provide_blst_for_icp_py_core()
    certificate.IC_ROOT_KEY = emulator.root_key  # the only key icp-py-core verifies with
    agent = Agent(Identity.from_pem(emulator.identity_pem.read_text()), Client(emulator.url))

    def send(index: int) -> None:
        reply = agent.update(
            emulator.canister_id, "file_upload_chunk", chunk_arg(data, "bench/default.bin", index)
        )
        assert "Ok" in str(reply) or reply

    return send


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=1_900_000)
    args = parser.parse_args()
    data = bytes(range(256)) * (args.chunk // 256) + bytes(args.chunk % 256)
    emulator = start_icsim()
    try:
        send_ours, client = ours(emulator, data)
        with client:
            mine = measure("pipeline.ic IcClient", send_ours, args.calls, args.window, args.chunk)
        baseline = measure(
            "icp-py-core Agent", icp_py_core_default(emulator, data), args.calls, args.window, args.chunk
        )
    finally:
        emulator.process.terminate()
        emulator.process.wait(timeout=30)
    print(f"{args.calls} update calls of {args.chunk:,} B, window {args.window}, icsim instant blocks")
    for m in (mine, baseline):
        print(
            f"  {m.name:22s} {m.mb_per_s:8.1f} MB/s wall   {m.cpu_mb_per_s:8.1f} MB/s per client CPU second"
        )
    print(f"  ratio (ours / default): wall {mine.mb_per_s / baseline.mb_per_s:.2f}x, "
          f"client CPU {mine.cpu_mb_per_s / baseline.cpu_mb_per_s:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
