"""Which llama.cpp pre-tokenizer (`tokenizer.ggml.pre`) a byte-level BPE tokenizer needs.

llama.cpp identifies a pre-tokenizer by hashing the token ids its tokenizer gives for a fixed probe text
(`get_vocab_base_pre` in convert_hf_to_gguf.py). Known hashes of the families we convert come first; a
tokenizer whose hash is unknown (a fine-tune with a retrained vocabulary, our test models) is recognised by
the split regex in its tokenizer.json, which is what the pre-tokenizer name stands for.
"""

from __future__ import annotations

from hashlib import sha256
from typing import Any

from tokenizers import Tokenizer

# The probe text of llama.cpp's get_vocab_base_pre (a fact needed to reproduce its hashes).
PROBE_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) "
    "😶\u200d🌫️ (multiple emojis concatenated) ✅ "
    "🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 "
    "កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
    "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, "
    "'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)

# sha256 of str(token ids of PROBE_TEXT) -> pre-tokenizer name, from llama.cpp's table.
KNOWN_HASHES: dict[str, str] = {
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",  # openai-community/gpt2
    "0fe1cf6eda062318a1af7270f3331a85c539a01778ff948e24388e949c5282f4": "gpt-2",  # ruGPT3XL
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5 / Qwen2 / Qwen2.5
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",  # Qwen3
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Llama 3
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM / SmolLM2
}

# The split regexes of tokenizer.json pre-tokenizers, keyed by what tells them apart.
_DIGIT_RULES = {r"\p{N}|": "qwen2", r"\p{N}{1,3}|": "llama-bpe"}
_SHARED_REGEX_START = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|"


def probe_hash(tokenizer: Tokenizer) -> str:
    ids = tokenizer.encode(PROBE_TEXT).ids
    return sha256(str(ids).encode()).hexdigest()


def pre_tokenizer_name(tokenizer: Tokenizer, tokenizer_json: dict[str, Any]) -> str | None:
    """The llama.cpp pre-tokenizer name, or None when neither the hash nor the regex is recognised."""
    if (name := KNOWN_HASHES.get(probe_hash(tokenizer))) is not None:
        return name
    return _name_from_structure(tokenizer_json.get("pre_tokenizer") or {})


def _name_from_structure(pre: dict[str, Any]) -> str | None:
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    if pre.get("type") != "Sequence":
        return None
    steps = pre.get("pretokenizers", [])
    if [s.get("type") for s in steps] == ["Digits", "ByteLevel"]:
        # SmolLM: single digits, then GPT-2's byte-level regex.
        digits, byte_level_step = steps
        if digits.get("individual_digits") and byte_level_step.get("use_regex", True):
            return "smollm"
        return None
    splits = [s for s in steps if s.get("type") == "Split"]
    byte_level = [s for s in steps if s.get("type") == "ByteLevel"]
    if len(splits) != 1 or len(byte_level) != 1 or byte_level[0].get("use_regex", True):
        return None
    regex = splits[0].get("pattern", {}).get("Regex", "")
    if not regex.startswith(_SHARED_REGEX_START):
        return None
    rest = regex[len(_SHARED_REGEX_START) :]
    return next((name for rule, name in _DIGIT_RULES.items() if rest.startswith(rule)), None)
