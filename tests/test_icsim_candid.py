"""The emulator's own Candid codec agrees with icp_candid (through prep's adapter) and decodes strictly."""

from __future__ import annotations

import pytest

from pipeline.ic import candid as client_candid
from tests.icsim import candid as c
from tests.icsim.principal import from_text

ANONYMOUS = "2vxsx-fae"
ITEM = c.record(name=c.TEXT, weight=c.FLOAT64, tags=c.Vec(c.TEXT))
CASES = [
    ("nat", c.NAT, 2**70 + 5),
    ("int", c.INT, -(2**65) - 3),
    ("nat8", c.NAT8, 255),
    ("nat16", c.NAT16, 65535),
    ("nat32", c.NAT32, 2**32 - 1),
    ("nat64", c.NAT64, 2**64 - 1),
    ("int8", c.INT8, -128),
    ("int16", c.INT16, -32768),
    ("int32", c.INT32, -(2**31)),
    ("int64", c.INT64, -(2**63)),
    ("float32", c.FLOAT32, 1.5),
    ("float64", c.FLOAT64, -2.25e300),
    ("text", c.TEXT, "grüße ✓"),
    ("bool", c.BOOL, True),
    ("blob", c.BLOB, bytes(range(256)) * 3),
    ("opt nat64", c.Opt(c.NAT64), None),
    ("opt text", c.Opt(c.TEXT), "x"),
    ("vec record { name : text; weight : float64; tags : vec text }", c.Vec(ITEM),
     [{"name": "a", "weight": 0.5, "tags": ["p", "q"]}, {"name": "b", "weight": 1.0, "tags": []}]),
    ("variant { Ok; Err : variant { Other : text; StatusCode : nat16 } }",
     c.variant(Ok=c.NULL, Err=c.variant(Other=c.TEXT, StatusCode=c.NAT16)), {"Err": {"StatusCode": 401}}),
    ("variant { Ok; Err : text }", c.variant(Ok=c.NULL, Err=c.TEXT), {"Ok": None}),
]  # fmt: skip


@pytest.mark.parametrize(("did", "ours", "value"), CASES, ids=[case[0] for case in CASES])
def test_both_directions_agree(did: str, ours: c.Type, value) -> None:
    assert c.decode(client_candid.encode([did], [value]), [ours]) == [value]
    assert client_candid.decode(c.encode([ours], [value]), [did]) == [value]


def test_principals_and_several_arguments() -> None:
    data = client_candid.encode(["text", "nat8", "float64", "principal"], ["hi", 7, 0.5, ANONYMOUS])
    assert c.decode(data, [c.TEXT, c.NAT8, c.FLOAT64, c.PRINCIPAL]) == ["hi", 7, 0.5, from_text(ANONYMOUS)]
    ours = c.encode([c.PRINCIPAL, c.TEXT], [from_text(ANONYMOUS), "x"])
    assert client_candid.decode(ours, ["principal", "text"]) == [ANONYMOUS, "x"]


def test_subtyping_extra_fields_and_missing_opt_fields() -> None:
    data = client_candid.encode(["record { a : nat64; extra : text }"], [{"a": 1, "extra": "ignored"}])
    expected = c.record(a=c.NAT64, maybe=c.Opt(c.TEXT))
    assert c.decode(data, [expected]) == [{"a": 1, "maybe": None}]
    assert c.decode(c.encode([], []), [c.Opt(c.NAT)]) == [None]


@pytest.mark.parametrize(
    ("data", "types", "message"),
    [
        (
            client_candid.encode(["record { filename : text }"], [{"filename": "x"}]),
            [c.record(filename=c.NAT)],
            "expected nat, got text",
        ),
        (
            client_candid.encode(["record { a : nat64 }"], [{"a": 1}]),
            [c.record(a=c.NAT64, b=c.NAT64)],
            "record field 'b' missing",
        ),
        (client_candid.encode(["nat64"], [1]), [c.NAT64, c.TEXT], r"argument 1 \(text\) missing"),
        (client_candid.encode(["nat64"], [1]) + b"\x00", [c.NAT64], "trailing bytes"),
        (b"DIDX\x00\x00", [], "missing DIDL magic"),
        (
            client_candid.encode(["variant { A; B }"], [{"B": None}]),
            [c.variant(A=c.NULL)],
            "is not in variant { A }",
        ),
        (client_candid.encode(["nat64"], [1])[:-2], [c.NAT64], "message ends early"),
    ],  # fmt: skip
)
def test_strict_decode_errors(data: bytes, types: list[c.Type], message: str) -> None:
    with pytest.raises(c.CandidDecodeError, match=message):
        c.decode(data, types)


def test_encoding_refuses_wrong_values() -> None:
    with pytest.raises(TypeError):
        c.encode([c.NAT64], ["1"])
    with pytest.raises(TypeError, match="variant has no tag"):
        c.encode([c.variant(Ok=c.NULL)], [{"Nope": None}])
