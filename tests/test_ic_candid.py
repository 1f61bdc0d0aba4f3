"""Candid adapter: plain-Python values both ways, the blob fast path, and .did parsing."""

from __future__ import annotations

import pytest

from pipeline.ic import candid

CHUNK = "record { filename : text; chunk : blob; chunksize : nat64; offset : nat64 }"
RESULT = "variant { Ok : record { filename : text; filesize : nat64; filesha256 : text }; Err : ApiError }"
API_ERROR = "variant { Other : text; StatusCode : nat16 }"
REQUIRED_DID = f"""
type ApiError = {API_ERROR};
service : {{
  file_upload_chunk : ({CHUNK}) -> ({RESULT});
  ready : () -> (variant {{ Ok : record {{ status_code : nat16 }}; Err : ApiError }}) query;
}}
"""


def test_round_trip_plain_values() -> None:
    types = ["opt nat64", "record { nat; text }", "principal", "variant { Ok; Err : text }", "vec opt text"]
    values = [None, [7, "x"], "aaaaa-aa", {"Ok": None}, ["a", None]]
    assert candid.decode(candid.encode(types, values), types) == values
    assert candid.decode(candid.encode(["opt nat"], [5]), ["opt nat"]) == [5]


def test_blob_from_memoryview_is_bytes_on_the_wire() -> None:
    data = bytes(range(256)) * 7500
    chunk = {"filename": "m.gguf", "chunk": memoryview(data), "chunksize": len(data), "offset": 0}
    encoded = candid.encode([CHUNK], [chunk])
    assert data in encoded
    decoded = candid.decode(encoded, [CHUNK])[0]
    assert decoded["chunk"] == data and isinstance(decoded["chunk"], bytes)


def test_decode_without_types_keeps_hashes() -> None:
    encoded = candid.encode([f"variant {{ Ok : nat; Err : {API_ERROR} }}"], [{"Err": {"Other": "boom"}}])
    (value,) = candid.decode(encoded)
    ((tag, payload),) = value.items()
    assert tag.isdigit() and list(payload.values()) == ["boom"]


def test_bad_values_and_types_are_candid_errors() -> None:
    with pytest.raises(candid.CandidError, match="lacks field"):
        candid.encode([CHUNK], [{"filename": "x"}])
    with pytest.raises(candid.CandidError, match="no tag 'Maybe'"):
        candid.encode(["variant { Ok; Err : text }"], [{"Maybe": None}])
    with pytest.raises(candid.CandidError, match="not valid Candid"):
        candid.parse_type("record { a : }")
    with pytest.raises(candid.CandidError, match="cannot decode"):
        candid.decode(b"DIDL\x00\x01\x71", ["nat"])


def test_service_parses_names_modes_and_types() -> None:
    service = candid.parse_service(REQUIRED_DID, "llama_cpp.did")
    assert service.methods["ready"].is_query and not service.methods["file_upload_chunk"].is_query
    (arg,) = service.methods["file_upload_chunk"].args
    value = {"filename": "f", "chunk": b"ab", "chunksize": 2, "offset": 0}
    assert candid.decode(candid.encode([arg], [value]), [arg]) == [value]


def test_missing_optional_fields_and_bare_tags_encode() -> None:
    """Profile templates leave out optional fields (null) and write payload-less variant tags as text."""
    kind = "record { model : text; tools : opt vec text; role : variant { user; system } }"
    encoded = candid.encode([kind], [{"model": "m", "role": "user"}])
    assert candid.decode(encoded, [kind]) == [{"model": "m", "tools": None, "role": {"user": None}}]
    assert candid.decode(candid.encode(["vec text"], [["-n", 5]]), ["vec text"]) == [["-n", "5"]]


def test_several_large_blobs_are_spliced_in_place() -> None:
    types = ["record { a : blob; b : vec blob; c : text }", "blob"]
    first, second, third = (bytes([n]) * (70_000 + n) for n in (1, 2, 3))
    values = [{"a": first, "b": [second, b"small", bytearray(third)], "c": "end"}, memoryview(first)]
    decoded = candid.decode(candid.encode(types, values), types)
    assert decoded == [{"a": first, "b": [second, b"small", third], "c": "end"}, first]
