"""Local smoke inference on the built artifacts, before anything is uploaded.

GGUF builds (llama_cpp) generate with llama.cpp (the optional `llama` extra); GPT-2 builds run the numpy
forward pass over the trimmed file. The answer must match the recipe's `expect` regex.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from tokenizers import Tokenizer

from pipeline.errors import PrepError
from pipeline.formats.config_json import read_gpt2_config
from pipeline.llamacpp import generate
from pipeline.manifest import Artifact
from pipeline.recipes import SmokeSpec
from pipeline.trim.forward import Gpt2Numpy


@dataclass(frozen=True)
class SmokeResult:
    prompt: str
    text: str
    n_generated: int
    expect: str
    passed: bool


def smoke_local(kind: str, artifacts: dict[str, Artifact], smoke: SmokeSpec) -> SmokeResult:
    """Generates `smoke.max_tokens` tokens from the built files; raises PrepError if the answer is wrong."""
    if kind == "llama_cpp":
        generation = generate(artifacts["model"].path, smoke.prompt, smoke.max_tokens)
        text, count = generation.text, generation.n_generated
    elif kind == "gpt2":
        text, count = _gpt2_answer(artifacts, smoke)
    else:
        raise PrepError(
            f"no local smoke test for canister kind {kind}",
            hint="run `prep smoke` against the deployed canister instead",
        )
    passed = re.search(smoke.expect, text) is not None
    result = SmokeResult(smoke.prompt, text, count, smoke.expect, passed)
    if not passed:
        raise PrepError(
            f"local smoke test failed: the answer {text!r} does not match {smoke.expect!r}",
            hint="the built model does not answer sensibly; check the source model and build settings",
        )
    return result


def _gpt2_answer(artifacts: dict[str, Artifact], smoke: SmokeSpec) -> tuple[str, int]:
    config = read_gpt2_config(artifacts["config"].path)
    tokenizer = Tokenizer.from_file(str(artifacts["tokenizer"].path))
    stop_id = json.loads(artifacts["config"].path.read_text()).get("eos_token_id")
    model = Gpt2Numpy(artifacts["safetensors"].path, config)
    ids = tokenizer.encode(smoke.prompt).ids
    out = model.generate(ids, smoke.max_tokens, stop_id if isinstance(stop_id, int) else None)
    return tokenizer.decode(out), len(out)
