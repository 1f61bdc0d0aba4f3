"""Model of icppWorld's icpp_llama2 canister (FACTS.md §1b): plain appends, everything in the heap."""

from __future__ import annotations

import hashlib
import re
import struct
from typing import Any

from tests.icsim.candid import BLOB, FLOAT32, INT, NAT16, NAT64, NULL, TEXT, record, variant
from tests.icsim.canisters.base import CallContext, CanisterModel, OffContractReply, query, update
from tests.icsim.principal import ANONYMOUS, to_text

API_ERROR = variant(InvalidId=NULL, Other=TEXT, StatusCode=NAT16, ZeroAddress=NULL)
STATUS_RESULT = variant(Err=API_ERROR, Ok=record(status_code=NAT16))
MODEL_CONFIG = record(
    dim=INT, hidden_dim=INT, n_layers=INT, n_heads=INT, n_kv_heads=INT, vocab_size=INT, seq_len=INT
)
PROMPT = record(prompt=TEXT, steps=NAT64, temperature=FLOAT32, topp=FLOAT32, rng_seed=NAT64)
INFERENCE_RESULT = variant(Err=API_ERROR, Ok=record(inference=TEXT, num_tokens=NAT64))
CANISTER_MODES = ("chat-principal", "nft-ordinal")
HEADER = struct.Struct("<7i")
CONFIG_FIELDS = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")

OK = {"Ok": {"status_code": 200}}
ACCESS_DENIED = {"Err": {"Other": "Access Denied"}}
WRONG_MODE = {"Err": {"Other": "Access Denied: canister_mode is not set to 'principal'."}}
# The C++ code answers these two cases off its own .did: `variant { Err : nat16 }`, `variant { Err : text }`.
NOT_READY = OffContractReply((variant(Err=NAT16),), ({"Err": 500},))
ANONYMOUS_REFUSED = OffContractReply(
    (variant(Err=TEXT),), ({"Err": "The Llama2 canister does not allow calling with anonymous principal."},)
)


def _err(message: str) -> dict[str, Any]:
    return {"Err": {"Other": message}}


class IcppLlama2Canister(CanisterModel):
    """The owner is the installer (the first controller), not every controller."""

    kind = "icpp_llama2"

    def _is_owner(self, ctx: CallContext) -> bool:
        return bool(self.controllers) and ctx.caller == self.controllers[0]

    def _chat_refusal(self, ctx: CallContext) -> dict[str, Any] | OffContractReply | None:
        if self.canister_mode != "chat-principal":
            return WRONG_MODE
        if not self.initialized:
            return NOT_READY
        if ctx.caller == ANONYMOUS:
            return ANONYMOUS_REFUSED
        return None

    def reset_heap(self) -> None:
        self.model_bytes = bytearray()
        self.tokenizer_bytes = bytearray()
        self.config: dict[str, int] | None = None
        self.vocab: list[bytes] = []
        self.initialized = False
        self.canister_mode: str | None = None
        self.chats: dict[bytes, int] = {}

    def heap_bytes(self) -> int:
        return len(self.model_bytes) + len(self.tokenizer_bytes)

    # ---- upload (owner only; plain appends) ----------------------------------------------

    @update(returns=(STATUS_RESULT,))
    def reset_model(self, ctx: CallContext) -> dict[str, Any]:
        if not self._is_owner(ctx):
            return ACCESS_DENIED
        self.model_bytes = bytearray()
        self.counters.emptied("model")
        self.initialized = False
        return OK

    @update(returns=(STATUS_RESULT,))
    def reset_tokenizer(self, ctx: CallContext) -> dict[str, Any]:
        if not self._is_owner(ctx):
            return ACCESS_DENIED
        self.tokenizer_bytes = bytearray()
        self.counters.emptied("tokenizer")
        self.initialized = False
        return OK

    @update(BLOB, returns=(STATUS_RESULT,))
    def upload_model_bytes_chunk(self, ctx: CallContext, chunk: bytes) -> dict[str, Any]:
        if not self._is_owner(ctx):
            return ACCESS_DENIED
        self.model_bytes += chunk
        self.counters.received("model", len(chunk))
        return OK

    @update(BLOB, returns=(STATUS_RESULT,))
    def upload_tokenizer_bytes_chunk(self, ctx: CallContext, chunk: bytes) -> dict[str, Any]:
        if not self._is_owner(ctx):
            return ACCESS_DENIED
        self.tokenizer_bytes += chunk
        self.counters.received("tokenizer", len(chunk))
        return OK

    # ---- set-up ---------------------------------------------------------------------------

    @update(returns=(STATUS_RESULT,))
    def initialize(self, ctx: CallContext) -> dict[str, Any]:
        if not self._is_owner(ctx):
            return ACCESS_DENIED
        try:
            config = _parse_header(bytes(self.model_bytes))
            self.vocab = _parse_tokenizer(bytes(self.tokenizer_bytes), abs(config["vocab_size"]))
        except ValueError as exc:
            return _err(str(exc))
        self.config = config
        self.initialized = True
        return OK

    @update(TEXT, returns=(STATUS_RESULT,))
    def set_canister_mode(self, ctx: CallContext, mode: str) -> dict[str, Any]:
        if not self._is_owner(ctx):
            return ACCESS_DENIED
        if mode not in CANISTER_MODES:
            return _err(f"ERROR: unknown canister_mode = {mode}")
        self.canister_mode = mode
        return OK

    @query(returns=(STATUS_RESULT,))
    def health(self, ctx: CallContext) -> dict[str, Any]:
        return OK

    @query(returns=(STATUS_RESULT,))
    def ready(self, ctx: CallContext) -> dict[str, Any]:
        if not self.initialized:
            return _err("Model not yet uploaded or initialize endpoint not yet called")
        if self.canister_mode is None:
            return _err("canister_mode is not yet set")
        return OK

    @query(returns=(TEXT,))
    def whoami(self, ctx: CallContext) -> str:
        return to_text(ctx.caller)

    @query(returns=(MODEL_CONFIG,))
    def get_model_config(self, ctx: CallContext) -> dict[str, int]:
        return dict(self.config) if self.config else dict.fromkeys(CONFIG_FIELDS, 0)

    # ---- chat -----------------------------------------------------------------------------

    @update(returns=(STATUS_RESULT,))
    def new_chat(self, ctx: CallContext) -> dict[str, Any] | OffContractReply:
        refusal = self._chat_refusal(ctx)
        if refusal is not None:
            return refusal
        self.chats[ctx.caller] = 0
        return OK

    @update(PROMPT, returns=(INFERENCE_RESULT,))
    def inference(self, ctx: CallContext, prompt: dict[str, Any]) -> dict[str, Any] | OffContractReply:
        refusal = self._chat_refusal(ctx)
        if refusal is not None:
            return refusal
        digest = hashlib.sha256(prompt["prompt"].encode()).digest()
        steps = max(1, min(prompt["steps"], len(self.vocab)))
        tokens = [self.vocab[b % len(self.vocab)] for b in (digest * (steps // 32 + 1))[:steps]]
        text = prompt["prompt"] + " " + b"".join(_piece(t) for t in tokens).decode("utf-8", "replace")
        self.chats[ctx.caller] = self.chats.get(ctx.caller, 0) + steps
        return {"Ok": {"inference": text, "num_tokens": steps}}


def _piece(token: bytes) -> bytes:
    """What llama2.c prints for a token: `<0xNN>` byte tokens as that byte, other <...> as nothing."""
    match = re.fullmatch(rb"<0x([0-9A-F]{2})>", token)
    if match:
        return bytes([int(match.group(1), 16)])
    return b"" if token.startswith(b"<") else token


def _parse_header(model: bytes) -> dict[str, int]:
    if len(model) < HEADER.size:
        raise ValueError(f"model.bin has {len(model)} bytes, fewer than its {HEADER.size}-byte header")
    config = dict(zip(CONFIG_FIELDS, HEADER.unpack_from(model), strict=True))
    positive = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "seq_len")
    bad = [name for name in positive if config[name] <= 0] + (
        ["vocab_size"] if config["vocab_size"] == 0 else []
    )
    if bad or config["dim"] % config["n_heads"]:
        raise ValueError(f"model.bin header is not a llama2.c config: {config}")
    expected = _expected_model_size(config)
    if len(model) < expected:
        raise ValueError(f"model.bin has {len(model)} bytes; its header needs at least {expected}")
    return config


def _expected_model_size(c: dict[str, int]) -> int:
    dim, hidden, layers, vocab = c["dim"], c["hidden_dim"], c["n_layers"], abs(c["vocab_size"])
    head_size = dim // c["n_heads"]
    kv_dim = c["n_kv_heads"] * head_size
    floats = vocab * dim + layers * (2 * dim + dim * dim * 2 + 2 * dim * kv_dim + 3 * dim * hidden)
    floats += dim + c["seq_len"] * head_size
    if c["vocab_size"] < 0:
        floats += vocab * dim
    return HEADER.size + 4 * floats


def _parse_tokenizer(data: bytes, vocab_size: int) -> list[bytes]:
    if len(data) < 4:
        raise ValueError("tokenizer.bin is empty or truncated")
    (max_token_length,) = struct.unpack_from("<i", data)
    position, tokens = 4, []
    for index in range(vocab_size):
        if position + 8 > len(data):
            raise ValueError(f"tokenizer.bin ends at token {index} of {vocab_size}")
        _, length = struct.unpack_from("<fi", data, position)
        position += 8
        if length < 0 or length > max_token_length or position + length > len(data):
            raise ValueError(f"tokenizer.bin token {index} has a bad length {length}")
        tokens.append(data[position : position + length])
        position += length
    return tokens
