"""The one adapter over llama-cpp-python (the optional `llama` extra): K-quants, ggml's quantizers and
local generation.

llama-cpp-python's high-level `Llama` class cannot turn off llama.cpp's "extra buffer types" (weight
repacking), and on CPUs with AMX a natively built llama.cpp crashes on quantized models unless they are
off; so generation goes through the low-level API, which sets `use_extra_bufts = False`.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType

from pipeline.atomic import atomic_path
from pipeline.errors import PrepError

INSTALL_HINT = "run `make install` (installs the `llama` extra) or `pip install 'ic-model-prep[llama]'`"
DISTRIBUTION = "llama-cpp-python"


def require_llama_cpp(purpose: str) -> ModuleType:
    """Imports llama_cpp, or explains how to get it."""
    try:
        import llama_cpp
    except ImportError as err:
        raise PrepError(
            f"{purpose} needs llama-cpp-python (the optional `llama` extra)", hint=INSTALL_HINT
        ) from err
    return llama_cpp


def llama_cpp_installed() -> bool:
    """Whether the extra is there, without importing it."""
    return importlib.util.find_spec("llama_cpp") is not None


def load_libggml(purpose: str) -> ctypes.CDLL:
    """llama-cpp-python's own libggml (the library llama_model_quantize runs), for its ggml_* functions."""
    require_llama_cpp(purpose)
    from llama_cpp._ggml import libggml

    return libggml


def llama_cpp_version() -> str:
    return metadata.version(DISTRIBUTION)


def quantize_with_llama(source: Path, dest: Path, file_type: int, threads: int = 0) -> None:
    """Runs llama.cpp's llama_model_quantize from `source` to `dest` (written atomically)."""
    llama_cpp = require_llama_cpp("K-quant quantization")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = file_type
    params.nthread = threads
    with atomic_path(dest) as tmp:
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
        if status != 0:
            raise PrepError(
                f"llama.cpp could not quantize {source} (status {status})", hint="see its log above"
            )


@dataclass(frozen=True)
class Generation:
    text: str
    n_prompt_tokens: int
    n_generated: int


def generate(model_path: Path, prompt: str, max_tokens: int, n_ctx: int = 512) -> Generation:
    """Greedy generation of up to `max_tokens` tokens after `prompt` with llama.cpp on the CPU."""
    llama_cpp = require_llama_cpp("local smoke inference")
    llama_cpp.llama_backend_init()
    llama_cpp.llama_log_set(_SILENT_LOG, ctypes.c_void_p())
    model_params = llama_cpp.llama_model_default_params()
    model_params.use_extra_bufts = False
    model = llama_cpp.llama_model_load_from_file(str(model_path).encode(), model_params)
    if not model:
        raise PrepError(f"llama.cpp could not load {model_path}", hint="is it a complete GGUF file?")
    try:
        return _generate_with(llama_cpp, model, prompt, max_tokens, n_ctx)
    finally:
        llama_cpp.llama_model_free(model)


def _generate_with(
    llama_cpp: ModuleType, model: object, prompt: str, max_tokens: int, n_ctx: int
) -> Generation:
    vocab = llama_cpp.llama_model_get_vocab(model)
    tokens = _tokenize(llama_cpp, vocab, prompt)
    if len(tokens) + max_tokens > n_ctx:
        n_ctx = len(tokens) + max_tokens
    ctx_params = llama_cpp.llama_context_default_params()
    ctx_params.n_ctx = n_ctx
    ctx_params.n_batch = n_ctx
    ctx_params.n_threads = ctx_params.n_threads_batch = min(2, os.cpu_count() or 1)
    ctx = llama_cpp.llama_init_from_model(model, ctx_params)
    if not ctx:
        raise PrepError("llama.cpp could not create a context for the smoke test")
    sampler = llama_cpp.llama_sampler_init_greedy()
    pieces: list[bytes] = []
    try:
        batch_tokens = (llama_cpp.llama_token * len(tokens))(*tokens)
        batch = llama_cpp.llama_batch_get_one(batch_tokens, len(tokens))
        for _ in range(max_tokens):
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise PrepError("llama.cpp failed to evaluate the smoke prompt")
            token = llama_cpp.llama_sampler_sample(sampler, ctx, -1)
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            pieces.append(_piece(llama_cpp, vocab, token))
            next_token = (llama_cpp.llama_token * 1)(token)
            batch = llama_cpp.llama_batch_get_one(next_token, 1)
    finally:
        llama_cpp.llama_sampler_free(sampler)
        llama_cpp.llama_free(ctx)
    return Generation(b"".join(pieces).decode("utf-8", errors="replace"), len(tokens), len(pieces))


def _tokenize(llama_cpp: ModuleType, vocab: object, text: str) -> list[int]:
    raw = text.encode()
    capacity = len(raw) + 16
    buffer = (llama_cpp.llama_token * capacity)()
    count = llama_cpp.llama_tokenize(vocab, raw, len(raw), buffer, capacity, True, True)
    if count < 0:
        raise PrepError(f"the smoke prompt needs {-count} tokens, more than expected")
    return list(buffer[:count])


def _piece(llama_cpp: ModuleType, vocab: object, token: int) -> bytes:
    buffer = ctypes.create_string_buffer(256)
    length = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, False)
    return buffer.raw[: max(length, 0)]


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _SILENT_LOG(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    # llama.cpp logs every tensor it loads to stderr; the smoke result is reported by the caller instead.
    return None
