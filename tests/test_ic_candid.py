"""Candid adapter: plain-Python values both ways, the blob fast path, and .did signature matching."""

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


def test_service_matches_despite_names_order_and_blob_spelling() -> None:
    live = candid.parse_service(
        """
        type E = variant { StatusCode : nat16; Other : text };
        type In = record { offset : nat64; chunksize : nat64; chunk : vec nat8; filename : text };
        service : (nat) -> {
          ready : () -> (variant { Err : E; Ok : record { status_code : nat16 } }) query;
          file_upload_chunk : (In) -> (variant { Err : E; Ok : record { filesha256 : text; filesize : nat64;
                                                                         filename : text } });
          extra : () -> ();
        }
        """
    )
    required = candid.parse_service(REQUIRED_DID, "llama_cpp.did")
    assert candid.service_mismatches(required, live) == []
    assert required.methods["ready"].is_query and not required.methods["file_upload_chunk"].is_query


def test_service_mismatch_names_the_method_and_both_signatures() -> None:
    live = candid.parse_service(
        f"""
        type ApiError = {API_ERROR};
        service : {{ file_upload_chunk : ({CHUNK.replace("nat64; offset", "nat32; offset")}) -> ({RESULT}); }}
        """
    )
    problems = candid.service_mismatches(candid.parse_service(REQUIRED_DID), live)
    assert problems[0].startswith("method file_upload_chunk: expected (record {")
    assert "chunksize : nat32" in problems[0]
    assert problems[1] == "method ready is missing"


def test_recursive_types_parse_and_compare() -> None:
    did = "type List = opt record { head : nat; tail : List }; service : { sum : (List) -> (nat) query }"
    service = candid.parse_service(did)
    assert candid.service_mismatches(service, candid.parse_service(did.replace("List", "L"))) == []
    value = {"head": 1, "tail": {"head": 2, "tail": None}}
    arg_type = service.methods["sum"].args[0]
    assert candid.decode(candid.encode([arg_type], [value]), [arg_type]) == [value]


def test_several_large_blobs_are_spliced_in_place() -> None:
    types = ["record { a : blob; b : vec blob; c : text }", "blob"]
    first, second, third = (bytes([n]) * (70_000 + n) for n in (1, 2, 3))
    values = [{"a": first, "b": [second, b"small", bytearray(third)], "c": "end"}, memoryview(first)]
    decoded = candid.decode(candid.encode(types, values), types)
    assert decoded == [{"a": first, "b": [second, b"small", third], "c": "end"}, first]
