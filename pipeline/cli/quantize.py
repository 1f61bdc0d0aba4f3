"""`prep quantize`: quantize a float GGUF without a recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.output import JsonFlag, Output

# The keys of pipeline.quantize.NATIVE_FILE_TYPES and LLAMA_FILE_TYPES, written out so that --help need not
# import gguf and numpy (tests/test_cli.py checks that they agree).
NATIVE_FILE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1")
LLAMA_FILE_TYPES = ("q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k")
TYPES_HELP = f"{', '.join(NATIVE_FILE_TYPES)}; with the llama extra also {', '.join(LLAMA_FILE_TYPES)}"


def quantize_command(
    source: Annotated[Path, typer.Argument(help="An F32/F16/BF16 GGUF file.", exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the quantized GGUF.")],
    qtype: Annotated[str, typer.Option("--type", "-t", help=f"Quantization: {TYPES_HELP}.")] = "q8_0",
    json_output: JsonFlag = False,
) -> None:
    """Quantize a GGUF the way llama.cpp's llama-quantize does (byte-identical for F16..Q8_0)."""
    from pipeline.build import quantize_file

    output = Output(json=json_output)
    before = source.stat().st_size
    quantize_file(source, out, qtype)
    after = out.stat().st_size
    output.result(
        {"out": str(out), "type": qtype.lower(), "size_before": before, "size_after": after},
        f"{out}  {qtype.lower()}  {before:,} -> {after:,} bytes",
    )
