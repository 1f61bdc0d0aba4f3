"""Byte-level BPE vocabulary (tokenizer.json) -> GGUF tokenizer metadata, as llama.cpp writes it.

Tokens are listed by id up to the model's vocab_size (ids without a token become `[PAD<id>]`, UNUSED);
added tokens are CONTROL when special or special-looking, USER_DEFINED otherwise. Merges, special token
ids, add_bos/add_eos and the chat template come from gguf's SpecialVocab, as in llama.cpp.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import gguf
from tokenizers import Tokenizer

from pipeline.convert.pretokenizer import pre_tokenizer_name
from pipeline.errors import InvalidFile


@dataclass(frozen=True)
class BpeVocab:
    tokens: list[str]
    token_types: list[int]
    pre: str


def _looks_special(token: str) -> bool:
    # llama.cpp treats these added tokens as control tokens even when not marked special.
    return (
        token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
        or (token.startswith("<|") and token.endswith("|>"))
        or (token.startswith("<｜") and token.endswith("｜>"))
        or (token.startswith("<unused") and token.endswith(">"))
    )


def read_bpe_vocab(model_dir: Path, vocab_size: int) -> BpeVocab:
    """Reads tokenizer.json; `vocab_size` is the model's (config.json), which may exceed the tokenizer's."""
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        hint = (
            "SentencePiece tokenizers (tokenizer.model) are not converted"
            if (model_dir / "tokenizer.model").is_file()
            else None
        )
        raise InvalidFile(f"{path}: missing; a byte-level BPE tokenizer.json is needed", hint=hint)
    tokenizer_json = json.loads(path.read_text(encoding="utf-8"))
    model_type = tokenizer_json.get("model", {}).get("type")
    if model_type != "BPE":
        raise InvalidFile(f"{path}: tokenizer model is {model_type!r}; only byte-level BPE is converted")
    tokenizer = Tokenizer.from_file(str(path))
    pre = pre_tokenizer_name(tokenizer, tokenizer_json)
    if pre is None:
        raise InvalidFile(
            f"{path}: pre-tokenizer not recognised (neither its probe hash nor its split regex is one"
            " llama.cpp knows for gpt-2, qwen2, llama-bpe or smollm)"
        )
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    if vocab and max(vocab.values()) >= vocab_size:
        raise InvalidFile(
            f"{path}: token id {max(vocab.values())} is outside the model's vocab_size {vocab_size}"
        )
    by_id = {i: tok for tok, i in vocab.items()}
    added = {entry["id"]: entry for entry in tokenizer_json.get("added_tokens", [])}
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        token = by_id.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            token, token_type = _added_token(tokenizer, token, added[i])
            tokens.append(token)
            types.append(token_type)
        else:
            tokens.append(token)
            types.append(gguf.TokenType.NORMAL)
    return BpeVocab(tokens, types, pre)


def _added_token(tokenizer: Tokenizer, token: str, entry: dict) -> tuple[str, int]:
    if not entry.get("normalized", True):
        # llama.cpp expects added tokens pre-normalized: round-trip them through the tokenizer.
        token = tokenizer.decode(
            tokenizer.encode(token, add_special_tokens=False).ids, skip_special_tokens=False
        )
    if entry.get("special", False) or _looks_special(token):
        return token, gguf.TokenType.CONTROL
    return token.replace("\u2581", " "), gguf.TokenType.USER_DEFINED


def write_bpe_vocab(writer: gguf.GGUFWriter, model_dir: Path, vocab: BpeVocab) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    with _without_pair_template_warnings():
        special = gguf.SpecialVocab(model_dir, load_merges=True)
    special.add_to_gguf(writer, quiet=True)


class _PairTemplateWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "TemplateProcessing<pair>" not in record.getMessage()


@contextmanager
def _without_pair_template_warnings() -> Iterator[None]:
    """gguf warns on every conversion about tokenizer.json's sentence-pair template (e.g. "Unknown
    separator token '<s>'"): a causal LM never encodes sentence pairs, so it is noise to prep's users."""
    logger, quiet = logging.getLogger("gguf.vocab"), _PairTemplateWarning()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)
