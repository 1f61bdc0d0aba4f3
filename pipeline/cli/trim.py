"""`prep trim`: trim a GPT-2 checkpoint for the GPT-2 canister without a recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.output import JsonFlag, Output


def trim_command(
    model_dir: Annotated[
        Path,
        typer.Argument(
            help="GPT-2 directory: config.json, model.safetensors, tokenizer.json.", file_okay=False
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the trimmed files.")],
    dtype: Annotated[
        str, typer.Option("--dtype", help="Stored dtype of the kept tensors: f16 or f32.")
    ] = "f16",
    json_output: JsonFlag = False,
) -> None:
    """Keep only the tensors the candle GPT-2 loader reads (148 for 12 layers), optionally as f16."""
    from pipeline.trim import trim_gpt2

    result = trim_gpt2(model_dir, out, dtype)
    data = {
        "out": str(result.out_dir),
        "dtype": result.dtype,
        "size_before": result.size_before,
        "size_after": result.size_after,
        "tensors_kept": result.tensors_kept,
        "tensors_dropped": list(result.tensors_dropped),
    }
    human = (
        f"{result.safetensors}  {result.tensors_kept} tensors ({result.dtype}), "
        f"{result.size_before:,} -> {result.size_after:,} bytes; dropped {len(result.tensors_dropped)}"
    )
    Output(json=json_output).result(data, human)
