"""Q8_0 (and Q4_0) quantization of a ~100M-parameter F16 GGUF: ours (gguf.quants + numpy) against
llama.cpp's llama_model_quantize (llama-cpp-python, all cores), in the same run.

Prints both times, the ratio (ours / llama.cpp; target <= 2.0) and whether the bytes are identical.
Needs the `llama` extra. The model is generated (tests/tinymodels.py) and converted by pipeline.convert.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.convert.converter import convert_model  # noqa: E402
from pipeline.llamacpp import quantize_with_llama  # noqa: E402
from pipeline.quantize import quantize_gguf  # noqa: E402
from pipeline.quantize.plan import NATIVE_FILE_TYPES  # noqa: E402
from pipeline.sha import sha256_file  # noqa: E402
from tests.tinymodels import Dims, make_tiny_model  # noqa: E402

# 16 layers of a 768-wide llama with grouped-query attention and a 2048-wide MLP: ~100M parameters.
DIMS = Dims(n_layer=16, n_embd=768, n_head=12, n_kv_head=4, n_ff=2048, n_ctx=512, bpe_vocab=400)
ROUNDS = 2
TARGET_RATIO = 2.0


def best_time(run: Callable[[], None]) -> float:
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        root = Path(tmp)
        model_dir = make_tiny_model("llama", root / "hf", dims=DIMS)
        source = root / "model-f16.gguf"
        report = convert_model(model_dir, source, "f16")
        print(
            f"model: {report.parameter_count / 1e6:.1f}M parameters, F16 GGUF {source.stat().st_size:,} bytes"
        )
        worst = 0.0
        for qtype in ("q8_0", "q4_0"):
            ours, theirs = root / f"ours-{qtype}.gguf", root / f"llama-{qtype}.gguf"
            file_type = int(NATIVE_FILE_TYPES[qtype][0])
            t_llama = best_time(lambda t=theirs, f=file_type: quantize_with_llama(source, t, f))
            t_ours = best_time(lambda o=ours, q=qtype: quantize_gguf(source, o, q))
            identical = sha256_file(ours) == sha256_file(theirs)
            ratio = t_ours / t_llama
            worst = max(worst, ratio)
            print(
                f"{qtype}: ours {t_ours:.2f} s, llama_model_quantize {t_llama:.2f} s, "
                f"ratio {ratio:.2f} (target <= {TARGET_RATIO}), byte-identical: {identical}"
            )
            if not identical:
                return 1
    return 0 if worst <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
