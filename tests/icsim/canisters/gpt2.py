"""Model of decide-ai's candle GPT-2 canister (FACTS.md §1c): heap appends, stable copies, strict loader."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

from tokenizers import Tokenizer

from tests.icsim.candid import BLOB, BOOL, FLOAT64, NAT8, NAT64, NULL, PRINCIPAL, TEXT, Opt, variant
from tests.icsim.canisters.base import CallContext, CanisterModel, Reject, query, update

BUFFERS = ("safetensors", "config", "tokenizer")
STABLE_BUFFERS = ("safetensors", "tokenizer")
UNIT_RESULT = variant(Ok=NULL, Err=TEXT)
TEXT_RESULT = variant(Ok=TEXT, Err=TEXT)
CONFIG_FIELDS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "layer_norm_epsilon")
FLOAT_DTYPES = {"F32": 4, "F16": 2, "BF16": 2}


class Gpt2Canister(CanisterModel):
    kind = "gpt2"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.authorized: set[bytes] = set()
        super().__init__(*args, **kwargs)

    def reset_heap(self) -> None:
        self.buffers: dict[str, bytearray] = {name: bytearray() for name in BUFFERS}
        self.model_config: dict[str, Any] | None = None
        self.tokenizer: Tokenizer | None = None

    def heap_bytes(self) -> int:
        return sum(len(buffer) for buffer in self.buffers.values())

    def _guard(self, ctx: CallContext) -> None:
        if not (ctx.is_controller or ctx.caller in self.authorized):
            raise Reject(4, f"Error from Canister {self.canister_text}: Unauthorized caller", "IC0406")

    def stable_bytes(self, name: str) -> bytes | None:
        path = self.stable_dir / f"{name}.bin"
        return path.read_bytes() if path.exists() else None

    # ---- heap buffers -------------------------------------------------------------------

    def _append(self, ctx: CallContext, name: str, chunk: bytes) -> tuple[()]:
        self._guard(ctx)
        self.buffers[name] += chunk
        self.counters.received(name, len(chunk))
        return ()

    def _clear(self, ctx: CallContext, name: str) -> tuple[()]:
        self._guard(ctx)
        self.buffers[name] = bytearray()
        self.counters.emptied(name)
        return ()

    @update(BLOB)
    def append_safetensors_bytes(self, ctx: CallContext, chunk: bytes) -> tuple[()]:
        return self._append(ctx, "safetensors", chunk)

    @update(BLOB)
    def append_config_bytes(self, ctx: CallContext, chunk: bytes) -> tuple[()]:
        return self._append(ctx, "config", chunk)

    @update(BLOB)
    def append_tokenizer_bytes(self, ctx: CallContext, chunk: bytes) -> tuple[()]:
        return self._append(ctx, "tokenizer", chunk)

    @query(returns=(NAT64,))
    def safetensors_bytes_length(self, ctx: CallContext) -> int:
        return len(self.buffers["safetensors"])

    @query(returns=(NAT64,))
    def config_bytes_length(self, ctx: CallContext) -> int:
        return len(self.buffers["config"])

    @query(returns=(NAT64,))
    def tokenizer_bytes_length(self, ctx: CallContext) -> int:
        return len(self.buffers["tokenizer"])

    @update()
    def clear_safetensors_bytes(self, ctx: CallContext) -> tuple[()]:
        return self._clear(ctx, "safetensors")

    @update()
    def clear_config_bytes(self, ctx: CallContext) -> tuple[()]:
        return self._clear(ctx, "config")

    @update()
    def clear_tokenizer_bytes(self, ctx: CallContext) -> tuple[()]:
        return self._clear(ctx, "tokenizer")

    # ---- stable copies (the .did says () but the Rust code returns Result<(), String>) ----

    def _store(self, ctx: CallContext, name: str) -> dict[str, Any]:
        self._guard(ctx)
        (self.stable_dir / f"{name}.bin").write_bytes(bytes(self.buffers[name]))
        self.buffers[name] = bytearray()
        self.counters.emptied(name)
        return {"Ok": None}

    def _load(self, ctx: CallContext, name: str) -> dict[str, Any]:
        self._guard(ctx)
        data = self.stable_bytes(name)
        if data is None:
            return {"Err": f"no {name} bytes in stable memory"}
        self.buffers[name] = bytearray(data)
        return {"Ok": None}

    @update(returns=(UNIT_RESULT,), declared=())
    def store_safetensors_bytes_to_stable(self, ctx: CallContext) -> dict[str, Any]:
        return self._store(ctx, "safetensors")

    @update(returns=(UNIT_RESULT,), declared=())
    def load_safetensors_bytes_from_stable(self, ctx: CallContext) -> dict[str, Any]:
        return self._load(ctx, "safetensors")

    @update(returns=(UNIT_RESULT,), declared=())
    def store_tokenizer_bytes_to_stable(self, ctx: CallContext) -> dict[str, Any]:
        return self._store(ctx, "tokenizer")

    @update(returns=(UNIT_RESULT,), declared=())
    def load_tokenizer_bytes_from_stable(self, ctx: CallContext) -> dict[str, Any]:
        return self._load(ctx, "tokenizer")

    # ---- set-up and generation --------------------------------------------------------

    @update(returns=(UNIT_RESULT,))
    def setup_model(self, ctx: CallContext) -> dict[str, Any]:
        self._guard(ctx)
        config_bytes, weights = bytes(self.buffers["config"]), bytes(self.buffers["safetensors"])
        self.buffers["config"], self.buffers["safetensors"] = bytearray(), bytearray()
        try:
            config = _parse_config(config_bytes)
            _check_safetensors(weights, config)
        except ValueError as exc:
            return {"Err": str(exc)}
        self.model_config = config
        return {"Ok": None}

    @update(returns=(UNIT_RESULT,), declared=(Opt(TEXT),))
    def setup_tokenizer(self, ctx: CallContext) -> dict[str, Any]:
        self._guard(ctx)
        try:
            self.tokenizer = Tokenizer.from_str(bytes(self.buffers["tokenizer"]).decode())
        except Exception as exc:  # the tokenizers library raises plain Exception subclasses
            return {"Err": f"failed to parse tokenizer: {exc}"}
        return {"Ok": None}

    @update(TEXT, NAT8, FLOAT64, returns=(TEXT_RESULT,))
    def generate(self, ctx: CallContext, prompt: str, max_tokens: int, temperature: float) -> dict[str, Any]:
        if self.model_config is None or self.tokenizer is None:
            return {"Err": "model or tokenizer not set up"}
        vocab = min(self.model_config["vocab_size"], self.tokenizer.get_vocab_size())
        digest = hashlib.sha256(prompt.encode()).digest()
        ids = [digest[i % 32] * 7 % vocab for i in range(max_tokens)]
        return {"Ok": prompt + self.tokenizer.decode(ids)}

    @update(PRINCIPAL)
    def add_authorized_principal(self, ctx: CallContext, principal: bytes) -> tuple[()]:
        self._guard(ctx)
        self.authorized.add(principal)
        return ()

    @query(PRINCIPAL, returns=(BOOL,))
    def is_principal_authorized(self, ctx: CallContext, principal: bytes) -> bool:
        return principal in self.authorized or principal in self.controllers


def _parse_config(data: bytes) -> dict[str, Any]:
    try:
        config = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"config is not JSON: {exc}") from exc
    missing = [name for name in CONFIG_FIELDS if name not in config]
    if missing:
        raise ValueError(f"config lacks {', '.join(missing)}")
    n_inner = config.get("n_inner")
    if n_inner is not None and n_inner != 4 * config["n_embd"]:
        raise ValueError(f"n_inner {n_inner} is not 4*n_embd ({4 * config['n_embd']})")
    return config


def expected_tensors(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The exact tensors the canister's loader reads, with their shapes."""
    embd, vocab, positions = config["n_embd"], config["vocab_size"], config["n_positions"]
    shapes: dict[str, tuple[int, ...]] = {
        "transformer.wte.weight": (vocab, embd),
        "transformer.wpe.weight": (positions, embd),
        "transformer.ln_f.weight": (embd,),
        "transformer.ln_f.bias": (embd,),
    }
    for layer in range(config["n_layer"]):
        prefix = f"transformer.h.{layer}."
        for name, weight, bias in (
            ("ln_1", (embd,), (embd,)),
            ("ln_2", (embd,), (embd,)),
            ("attn.c_attn", (embd, 3 * embd), (3 * embd,)),
            ("attn.c_proj", (embd, embd), (embd,)),
            ("mlp.c_fc", (embd, 4 * embd), (4 * embd,)),
            ("mlp.c_proj", (4 * embd, embd), (embd,)),
        ):
            shapes[f"{prefix}{name}.weight"] = weight
            shapes[f"{prefix}{name}.bias"] = bias
    return shapes


def _check_safetensors(data: bytes, config: dict[str, Any]) -> None:
    if len(data) < 8:
        raise ValueError("safetensors buffer is empty or truncated")
    (header_size,) = struct.unpack_from("<Q", data)
    if 8 + header_size > len(data):
        raise ValueError(f"safetensors header of {header_size} bytes runs past the {len(data)}-byte buffer")
    try:
        header = json.loads(data[8 : 8 + header_size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"safetensors header is not JSON: {exc}") from exc
    header.pop("__metadata__", None)
    body = len(data) - 8 - header_size
    end = max((entry["data_offsets"][1] for entry in header.values()), default=0)
    if end != body:
        raise ValueError(
            f"safetensors metadata incomplete buffer: tensors end at {end}, data is {body} bytes"
        )
    for name, shape in expected_tensors(config).items():
        entry = header.get(name)
        if entry is None:
            raise ValueError(f"cannot find tensor {name}")
        if entry["dtype"] not in FLOAT_DTYPES:
            raise ValueError(f"tensor {name} has dtype {entry['dtype']}, not a float type")
        if tuple(entry["shape"]) != shape:
            raise ValueError(f"shape mismatch for {name}, expected {list(shape)}, got {entry['shape']}")
        start, stop = entry["data_offsets"]
        size = FLOAT_DTYPES[entry["dtype"]]
        for dim in shape:
            size *= dim
        if stop - start != size:
            raise ValueError(f"tensor {name} has {stop - start} data bytes, expected {size}")
