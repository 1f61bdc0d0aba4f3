"""`prep convert`: convert a Hugging Face checkpoint directory to GGUF without a recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.output import JsonFlag, Output

# pipeline.convert.OUTTYPES, written out so that --help need not import gguf and numpy
# (tests/test_cli.py checks that the two agree).
OUTTYPES = ("f32", "f16", "bf16", "q8_0")


def convert_command(
    model_dir: Annotated[
        Path,
        typer.Argument(help="A Hugging Face model directory (config.json, safetensors, tokenizer.json)."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the GGUF file.")],
    outtype: Annotated[
        str, typer.Option("--type", "-t", help=f"Tensor type: {', '.join(OUTTYPES)}.")
    ] = "f16",
    json_output: JsonFlag = False,
) -> None:
    """Convert to GGUF exactly as llama.cpp's convert_hf_to_gguf.py does, without torch."""
    from pipeline.convert import ARCHITECTURES, convert_model

    output = Output(json=json_output)
    output.info(f"converting {model_dir} ({', '.join(sorted(ARCHITECTURES))} supported)")
    report = convert_model(model_dir, out, outtype.lower())
    output.result(
        {
            "out": str(report.out),
            "architecture": report.architecture,
            "hf_architecture": report.hf_architecture,
            "type": report.outtype,
            "tensors": report.tensor_count,
            "parameters": report.parameter_count,
            "size": report.file_size,
            "seconds": round(report.seconds, 3),
        },
        f"{report.out}  {report.architecture} {report.outtype}  {report.tensor_count} tensors, "
        f"{report.parameter_count:,} parameters, {report.file_size:,} bytes in {report.seconds:.1f} s",
    )
