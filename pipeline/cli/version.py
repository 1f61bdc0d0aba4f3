"""`prep version`: the versions of prep and of the libraries that produce its bytes."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from pipeline import __version__
from pipeline.cli.output import JsonFlag, Output

LIBRARIES = ("huggingface-hub", "gguf", "safetensors", "tokenizers", "numpy", "icp-py-core", "httpx", "cbor2")


def library_versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def version_command(json_output: JsonFlag = False) -> None:
    """Print the versions of prep and of the libraries it uses."""
    libs = library_versions()
    human = "\n".join([f"prep {__version__}", *(f"  {k} {v}" for k, v in libs.items())])
    Output(json=json_output).result({"prep": __version__, "libraries": libs}, human)
