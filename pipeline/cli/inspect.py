"""`prep inspect`: identify and validate a model file (GGUF, safetensors, llama2.c, tokenizer.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.output import JsonFlag, Output


def inspect_command(
    path: Annotated[Path, typer.Argument(help="The file to check; its format is detected from its content.")],
    json_output: JsonFlag = False,
) -> None:
    """Check a model file's structure against its size and print what it holds; exit 2 if it is broken."""
    from pipeline.formats.detect import inspect_file

    report = inspect_file(path)
    Output(json=json_output).result(
        {"path": str(report.path), "format": report.format, "size": report.file_size, **report.details},
        "\n".join([f"{report.path}: {report.format}, valid", *report.lines]),
    )
