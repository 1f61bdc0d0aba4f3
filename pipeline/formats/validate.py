"""The format check a canister kind's role asks for (`format` in canisters/<kind>/profile.toml).

Run on every file before its first byte is sent: what the canister's loader would reject is refused
here, before it replaces a working model. Each validator reads the whole structure the loader reads
(headers, tensor layout, every tokenizer record) and returns a one-line summary.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.errors import PrepError, UsageError
from pipeline.formats.config_json import read_gpt2_config
from pipeline.formats.detect import inspect_file
from pipeline.formats.llama2c import read_llama2c_tokenizer
from pipeline.formats.names import (
    DESCRIPTIONS,
    GGUF,
    GPT2_CONFIG,
    LLAMA2C_MODEL,
    LLAMA2C_TOKENIZER,
    SAFETENSORS,
    TOKENIZER_JSON,
)


def _by_content(expected: str) -> Callable[[Path], str]:
    def check(path: Path) -> str:
        return inspect_file(path, expected).lines[0]

    return check


def _llama2c_tokenizer(path: Path) -> str:
    info = read_llama2c_tokenizer(path)
    if info.token_count == 0:
        raise PrepError(f"{path}: a llama2.c tokenizer with no tokens")
    return f"llama2.c tokenizer: {info.token_count} tokens"


def _gpt2_config(path: Path) -> str:
    info = read_gpt2_config(path)
    return f"GPT-2 config: {info.n_layer} layers, n_embd {info.n_embd}, vocab {info.vocab_size}"


VALIDATORS: dict[str, Callable[[Path], str]] = {
    GGUF: _by_content(GGUF),
    SAFETENSORS: _by_content(SAFETENSORS),
    LLAMA2C_MODEL: _by_content(LLAMA2C_MODEL),
    LLAMA2C_TOKENIZER: _llama2c_tokenizer,
    TOKENIZER_JSON: _by_content(TOKENIZER_JSON),
    GPT2_CONFIG: _gpt2_config,
}


_HINT = "check the file; pass --no-validate only if you are sure the canister accepts it"


def validate_file(path: Path, fmt: str, *, role: str, kind: str) -> str:
    """The file's summary; UsageError (exit 2) naming the file, the role and the format when the kind's
    loader would reject it."""
    if path.stat().st_size == 0:
        raise UsageError(
            f"{path} is empty: {kind} canisters need {DESCRIPTIONS[fmt]} as their {role} file",
            hint=_HINT,
        )
    try:
        return VALIDATORS[fmt](path)
    except PrepError as err:
        raise UsageError(
            f"{path} is not {DESCRIPTIONS[fmt]}, which {kind} canisters need as their {role} file: "
            f"{err.message.removeprefix(f'{path}: ')}",
            hint=f"{err.hint}; or {_HINT}" if err.hint else _HINT,
        ) from err
