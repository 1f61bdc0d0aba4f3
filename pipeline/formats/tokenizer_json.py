"""Hugging Face tokenizer.json: parsed with `tokenizers` itself, so what loads here loads in the canister."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from pipeline.errors import InvalidFile


@dataclass(frozen=True)
class TokenizerJsonInfo:
    path: Path
    model_type: str
    vocab_size: int  # with added tokens
    added_tokens: int
    file_size: int


def read_tokenizer_json(path: Path) -> TokenizerJsonInfo:
    path = Path(path)
    text = path.read_bytes()
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidFile(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise InvalidFile(f"{path}: no 'model' object: not a tokenizer.json")
    try:
        tokenizer = Tokenizer.from_str(text.decode("utf-8"))
    except Exception as err:  # tokenizers raises plain Exception subclasses from Rust
        raise InvalidFile(f"{path}: the tokenizers library rejects it: {err}") from err
    return TokenizerJsonInfo(
        path,
        str(data["model"].get("type", "unknown")),
        tokenizer.get_vocab_size(with_added_tokens=True),
        len(data.get("added_tokens") or []),
        len(text),
    )


def looks_like_tokenizer_json(prefix: bytes) -> bool:
    head = prefix.lstrip()
    return head.startswith(b"{") and (b'"added_tokens"' in head[:4096] or b'"model"' in head)
