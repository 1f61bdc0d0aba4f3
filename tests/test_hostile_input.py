"""Property-based: hostile certificates, replies and model files end in prep's own errors, nothing else.

Each property starts from real, valid bytes (mainnet certificates, icsim-shaped answers, generated model
files) and lets hypothesis overwrite, cut and retype parts of them, plus wholly random input. Any
exception that is not a PrepError (KeyError, TypeError, MemoryError, RecursionError, ...) fails.
"""

from __future__ import annotations

import contextlib
import struct
import tempfile
from pathlib import Path
from typing import Any

import cbor2
import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from icp_certificate.certificate import IC_ROOT_KEY
from icp_principal import Principal
from safetensors.numpy import save_file
from tokenizers import Tokenizer
from tokenizers.models import WordLevel

from pipeline.errors import PrepError
from pipeline.formats.gguf import read_gguf
from pipeline.formats.llama2c import read_llama2c_model, read_llama2c_tokenizer
from pipeline.formats.safetensors import read_safetensors_header
from pipeline.formats.tokenizer_json import read_tokenizer_json
from pipeline.ic import candid, replies
from pipeline.ic.candid import CandidError
from pipeline.ic.candid_wire import decode_typed
from pipeline.ic.certificate import certificate_time, parse_certificate, verify_certificate
from pipeline.ic.query_signatures import NodeKeys, verify_query_signatures
from tests.tinymodels import make_llama2c

DATA = Path(__file__).parent / "data" / "agent_rs"
IVG37 = Principal.from_str("ivg37-qiaaa-aaaab-aaaga-cai").bytes
FAST = settings(max_examples=2000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _certificate(name: str) -> bytes:
    return bytes(cbor2.loads((DATA / f"{name}.bin").read_bytes())["certificate"])


MAINNET = [_certificate(n) for n in ("ivg37_time", "ivg37_delegated_v2", "224od_subnet")]
MADE = certificate_time(parse_certificate(MAINNET[0], "certificate"))

# Any CBOR value, with the values that broke parsers before: huge integers where bytes belong, deep lists.
cbor_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([2**40, 2**62, -1]),
    st.binary(max_size=64),
    st.text(max_size=16),
    st.floats(allow_nan=True),
)
# Two levels deep is enough to put a wrong type anywhere a parser looks (and cheap to generate).
cbor_values = st.one_of(
    cbor_leaves,
    st.lists(cbor_leaves, max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=12), st.binary(max_size=8)), cbor_leaves, max_size=4),
    st.lists(st.lists(cbor_leaves, max_size=3), max_size=3),
)


def _mutate_tree(node: Any, path: list[int], replacement: Any) -> Any:
    """`node` with the part reached by following `path` (child indexes, wrapped) replaced."""
    if not path or not isinstance(node, list) or not node:
        return replacement
    index = path[0] % len(node)
    return [*node[:index], _mutate_tree(node[index], path[1:], replacement), *node[index + 1 :]]


def _lists(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    if hasattr(value, "items"):
        return {k: _lists(v) for k, v in value.items()}
    return value


def _overwrite(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for position, byte in edits:
        out[position % len(out)] = byte
    return bytes(out[:cut] if cut is not None else out)


edits = st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), max_size=6)
cuts = st.none() | st.integers(min_value=0, max_value=20_000)


def _only_prep_errors(check, *args: Any, **kwargs: Any) -> None:
    with contextlib.suppress(PrepError):
        check(*args, **kwargs)


# ---- certificates -------------------------------------------------------------------------------


@SOME
@given(which=st.integers(0, 2), path=st.lists(st.integers(min_value=0), max_size=12), value=cbor_values)
def test_certificates_with_a_part_replaced(which: int, path: list[int], value: Any) -> None:
    decoded = _lists(cbor2.loads(MAINNET[which]))
    field = sorted(decoded)[path[0] % len(decoded)] if path else "tree"
    if field == "delegation" and isinstance(decoded[field], dict):
        inner = _lists(cbor2.loads(decoded[field]["certificate"]))
        inner["tree"] = _mutate_tree(inner["tree"], path[1:], value)
        decoded[field]["certificate"] = cbor2.dumps(inner)
    else:
        decoded[field] = _mutate_tree(decoded[field], path[1:], value)
    _only_prep_errors(verify_certificate, cbor2.dumps(decoded), IVG37, IC_ROOT_KEY, now_ns=MADE)


@FAST
@given(which=st.integers(0, 2), changes=edits, cut=cuts)
def test_certificates_with_bytes_overwritten_or_cut(which: int, changes, cut) -> None:
    data = _overwrite(MAINNET[which], changes, cut)
    _only_prep_errors(verify_certificate, data, IVG37, IC_ROOT_KEY, now_ns=MADE)


@FAST
@given(value=cbor_values)
def test_any_cbor_value_as_a_certificate(value: Any) -> None:
    _only_prep_errors(verify_certificate, cbor2.dumps(value), IVG37, IC_ROOT_KEY, now_ns=MADE)


# ---- replica answers: query, call and read_state bodies ------------------------------------------

answer_fields = st.dictionaries(
    st.sampled_from(
        ["status", "reply", "reject_code", "reject_message", "error_code", "certificate", "signatures"]
    ),
    cbor_values | st.sampled_from(["replied", "rejected", "accepted", {"arg": b"DIDL\x00\x00"}]),
    max_size=7,
)
NODE_KEYS = NodeKeys(b"\x01" * 29, {b"\x02" * 29: b"\x03" * 44})


def _read_answer(body: bytes) -> None:
    answer = replies.decode_map(body, "test")
    replies.query_outcome(answer, "test")
    verify_query_signatures(answer, b"\x00" * 32, NODE_KEYS, now_ns=MADE, max_age_ns=10**12, where="test")
    replies.field(answer, "certificate", bytes, "test")


@FAST
@given(answer=answer_fields)
def test_query_and_call_answers_of_any_shape(answer: dict[str, Any]) -> None:
    _only_prep_errors(_read_answer, cbor2.dumps(answer))


@SOME
@given(body=st.binary(max_size=300))
def test_answers_that_are_not_cbor(body: bytes) -> None:
    _only_prep_errors(_read_answer, body)


@SOME
@given(raw=st.binary(max_size=64) | cbor_values.map(cbor2.dumps))
def test_certified_controllers_of_any_shape(raw: bytes) -> None:
    _only_prep_errors(replies.principals, raw, "controllers")


# ---- Candid replies -----------------------------------------------------------------------------

DOWNLOAD_REPLY = (
    "variant { Ok : record { chunk : blob; chunksize : nat64; filesize : nat64; offset : nat64;"
    " done : bool }; Err : variant { Other : text; StatusCode : nat16 } }"
)
VALID_REPLY = candid.encode(
    [DOWNLOAD_REPLY],
    [{"Ok": {"chunk": b"x" * 40, "chunksize": 40, "filesize": 80, "offset": 0, "done": False}}],
)


@FAST
@given(changes=edits, cut=st.none() | st.integers(0, len(VALID_REPLY)))
def test_candid_replies_with_bytes_overwritten_or_cut(changes, cut) -> None:
    _only_prep_errors(candid.decode, _overwrite(VALID_REPLY, changes, cut), [DOWNLOAD_REPLY])


@FAST
@given(body=st.binary(max_size=200).map(lambda b: b"DIDL" + b))
def test_random_candid(body: bytes) -> None:
    _only_prep_errors(candid.decode, body, [DOWNLOAD_REPLY])


# ---- model files --------------------------------------------------------------------------------


def _seed_files() -> dict[str, bytes]:
    folder = Path(tempfile.mkdtemp(prefix="prep-hostile-"))
    writer = gguf.GGUFWriter(str(folder / "m.gguf"), "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    save_file({"wte": np.zeros((4, 8), dtype=np.float32)}, str(folder / "m.safetensors"))
    model, tokenizer = make_llama2c(
        folder / "llama2c", dim=8, hidden_dim=16, n_heads=2, vocab_size=32, seq_len=8
    )
    return {
        "gguf": (folder / "m.gguf").read_bytes(),
        "safetensors": (folder / "m.safetensors").read_bytes(),
        "llama2c_model": model.read_bytes(),
        "llama2c_tokenizer": tokenizer.read_bytes(),
        "tokenizer_json": Tokenizer(WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).to_str().encode(),
    }


SEEDS = _seed_files()
READERS = {
    "gguf": read_gguf,
    "safetensors": read_safetensors_header,
    "llama2c_model": read_llama2c_model,
    "llama2c_tokenizer": read_llama2c_tokenizer,
    "tokenizer_json": read_tokenizer_json,
}
SCRATCH = Path(tempfile.mkdtemp(prefix="prep-hostile-scratch-")) / "file"


@pytest.mark.parametrize("kind", sorted(READERS))
def test_model_file_parsers_with_bytes_overwritten_or_cut(kind: str) -> None:
    @SOME
    @given(changes=edits, cut=cuts, head=st.integers(0, 64))
    def property_(changes, cut, head) -> None:
        # Most edits land in the header, where the lengths and counts are.
        data = SEEDS[kind]
        changes = [(p % max(1, min(len(data), head * 8 + 8)), b) for p, b in changes]
        SCRATCH.write_bytes(_overwrite(data, changes, cut))
        _only_prep_errors(READERS[kind], SCRATCH)

    property_()


def test_the_seeds_are_valid() -> None:
    """The properties mutate valid files (else they would test only the first check)."""
    for kind, reader in READERS.items():
        SCRATCH.write_bytes(SEEDS[kind])
        reader(SCRATCH)
    assert struct.unpack("<I", SEEDS["gguf"][4:8])[0] == 3


def test_a_vector_of_nulls_announcing_trillions_of_items_is_refused() -> None:
    """Ten bytes that would decode for hours: `vec null` of 2^40 items (a decoding bomb)."""
    bomb = b"DIDL\x01\x6d\x7f\x01\x00" + b"\x80\x80\x80\x80\x80\x20"
    with pytest.raises(CandidError, match="zero-sized"):
        candid.decode(bomb)
    with pytest.raises(CandidError, match="zero-sized"):
        decode_typed(bomb)
    assert decode_typed(b"DIDL\x01\x6d\x7f\x01\x00\x03")[0][1] == [None, None, None]  # an honest one


@FAST
@given(body=st.binary(max_size=200).map(lambda b: b"DIDL" + b))
def test_random_candid_read_by_its_wire_types(body: bytes) -> None:
    _only_prep_errors(decode_typed, body)
