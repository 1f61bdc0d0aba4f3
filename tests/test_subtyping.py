"""Candid subtyping and coercion (pipeline.ic.subtyping), and replies read by their own type table.

Replies here are encoded with icsim's own Candid codec, not icp_candid, so a decoder bug cannot hide on
both sides.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import PrepError
from pipeline.ic import candid, subtyping
from pipeline.ic.candid_wire import decode_typed
from pipeline.targets.calls import CanisterRefused, interpret_reply, read_reply
from pipeline.targets.profile import load_profile
from tests.icsim import candid as sim
from tests.icsim.canisters.llama_cpp_releases import RUN_RESULT_V014


def t(text: str) -> candid.CandidType:
    return candid.parse_type(text)


@pytest.mark.parametrize(
    ("sub", "sup"),
    [
        ("nat", "int"),
        ("record { a : nat; b : text }", "record { a : nat }"),  # extra fields are ignored
        ("record { a : nat }", "record { a : nat; b : opt text }"),  # missing optional fields read null
        ("record { a : nat }", "record { a : nat; b : reserved }"),
        ("variant { Ok : nat }", "variant { Ok : nat; Err : text }"),  # fewer cases
        ("nat64", "opt nat64"),
        ("null", "opt text"),
        ("vec nat8", "blob"),
        ("text", "reserved"),
        ("empty", "text"),
        ("record { a : nat }", "record { a : int }"),
    ],
)
def test_subtypes(sub: str, sup: str) -> None:
    fit = subtyping.check(t(sub), t(sup))
    assert fit.ok and not fit.lossy


@pytest.mark.parametrize(
    ("sub", "sup", "where", "reason"),
    [
        ("int", "nat", "", "expected nat, the canister has int"),
        ("record { a : nat }", "record { a : nat; b : text }", "b", "field b : text is missing"),
        ("variant { Ok; Other : text }", "variant { Ok; Err : text }", "Other", "case Other is not one of"),
        (
            "record { a : record { b : nat32 } }",
            "record { a : record { b : nat64 } }",
            "a.b",
            "expected nat64",
        ),
        ("vec text", "blob", "", "expected nat8, the canister has text"),
        ("text", "record {}", "", "expected record {  }, the canister has text"),
    ],
)
def test_not_subtypes_name_the_field(sub: str, sup: str, where: str, reason: str) -> None:
    mismatch = subtyping.check(t(sub), t(sup)).mismatch
    assert mismatch is not None
    assert ".".join(mismatch.path) == where and reason in mismatch.reason


def test_any_type_fits_an_option_but_is_reported_as_read_as_null() -> None:
    """The spec's transitivity rule: `opt text <: opt nat` holds, the value reads as null; prep warns."""
    fit = subtyping.check(t("record { n : opt text }"), t("record { n : opt nat }"))
    assert fit.ok and [str(m) for m in fit.lossy] == [
        "n: expected nat, the canister has text; Candid reads it as null"
    ]


def test_recursive_types_compare_coinductively() -> None:
    a = t("record { head : nat; tail : opt List }".replace("List", "record { head : nat }"))
    assert subtyping.check(a, a).ok
    service = candid.parse_service(
        "type L = opt record { head : nat; tail : L }; service : { f : (L) -> () }"
    )
    renamed = candid.parse_service(
        "type M = opt record { tail : M; head : nat }; service : { f : (M) -> () }"
    )
    arg, other = service.methods["f"].args[0], renamed.methods["f"].args[0]
    assert subtyping.check(arg, other).ok and subtyping.check(other, arg).ok
    value = {"head": 1, "tail": {"head": 2, "tail": None}}
    assert candid.decode(candid.encode([arg], [value]), [arg]) == [value]


def test_sequences_drop_extra_values_and_need_the_missing_ones_optional() -> None:
    assert subtyping.check_sequence((t("nat"), t("text")), (t("nat"),), "result").ok
    assert subtyping.check_sequence((), (t("opt nat"),), "result").ok
    mismatch = subtyping.check_sequence((), (t("nat"),), "argument").mismatch
    assert mismatch is not None and str(mismatch) == "argument 1: none given, nat expected"


def test_coercion_follows_the_spec() -> None:
    wire = sim.record(a=sim.NAT, extra=sim.TEXT, tags=sim.Vec(sim.variant(x=sim.NULL, y=sim.NAT8)))
    data = sim.encode([wire], [{"a": 5, "extra": "ignored", "tags": [{"x": None}, {"y": 7}]}])
    ((wire_type, value),) = decode_typed(data)
    expected = t("record { a : int; missing : opt text; tags : vec variant { x; y : nat8; z : text } }")
    assert subtyping.coerce(value, wire_type, expected) == {
        "a": 5, "missing": None, "tags": [{"x": None}, {"y": 7}],
    }  # fmt: skip
    with pytest.raises(subtyping.CoercionError, match="field b is missing"):
        subtyping.coerce(value, wire_type, t("record { b : nat }"))
    # A value that does not fit an option's content reads as null.
    assert subtyping.coerce(value, wire_type, t("opt record { a : text }")) is None


def test_blobs_stay_bytes() -> None:
    data = sim.encode([sim.record(chunk=sim.BLOB)], [{"chunk": b"\x00\x01" * 40_000}])
    ((wire, value),) = decode_typed(data)
    assert subtyping.coerce(value, wire, t("record { chunk : blob }")) == {"chunk": b"\x00\x01" * 40_000}


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"DIDX",
        b"DIDL\x05",
        b"DIDL\x01\x6c\x02\x05\x71\x01\x71\x01\x00",
        b"DIDL\x00\x01\x05",
        b"DIDL\x01\x6e\x07\x01\x00",
    ],
)
def test_hostile_replies_are_candid_errors(data: bytes) -> None:
    with pytest.raises(candid.CandidError):
        decode_typed(data)


# ---- replies read by what they are --------------------------------------------------------------


GPT2_STEPS_SAYING_UNIT = ("store_safetensors_bytes_to_stable", "load_tokenizer_bytes_from_stable")
UNIT_RESULT = sim.variant(Ok=sim.NULL, Err=sim.TEXT)


@pytest.mark.parametrize("method", GPT2_STEPS_SAYING_UNIT)
def test_gpt2_steps_declared_unit_fail_on_an_err_reply(method: str) -> None:
    """service.did says `() -> ()`; the Rust code replies `variant { Ok; Err : text }`."""
    profile = load_profile("gpt2")
    step = next(s for s in profile.calls() if s.method == method)
    assert interpret_reply(profile, step, sim.encode([UNIT_RESULT], [{"Ok": None}])) is None
    assert interpret_reply(profile, step, sim.encode([], [])) is None  # the .did's own shape
    with pytest.raises(CanisterRefused, match="no safetensors bytes"):
        interpret_reply(profile, step, sim.encode([UNIT_RESULT], [{"Err": "no safetensors bytes"}]))


def test_gpt2_setup_tokenizer_fails_in_both_reply_shapes() -> None:
    """service.did says `opt text` (a text means failure); the code replies `variant { Ok; Err : text }`.
    A spec-following decoder reads that variant at `opt text` as null: prep must still see the Err."""
    profile = load_profile("gpt2")
    step = profile.role("tokenizer").after[-1]
    assert step.method == "setup_tokenizer"
    with pytest.raises(CanisterRefused, match="bad tokenizer"):  # the Rust code's shape
        interpret_reply(profile, step, sim.encode([UNIT_RESULT], [{"Err": "bad tokenizer"}]))
    with pytest.raises(CanisterRefused, match="bad tokenizer"):  # the .did's shape
        interpret_reply(profile, step, sim.encode([sim.Opt(sim.TEXT)], ["bad tokenizer"]))
    assert interpret_reply(profile, step, sim.encode([UNIT_RESULT], [{"Ok": None}])) is None
    assert interpret_reply(profile, step, sim.encode([sim.Opt(sim.TEXT)], [None])) is None
    # And the declared type alone would have read the Err as null (the spec's opt rule):
    ((wire, value),) = decode_typed(sim.encode([UNIT_RESULT], [{"Err": "bad tokenizer"}]))
    assert subtyping.coerce(value, wire, t("opt text")) is None


def test_llama_cpp_replies_before_v0_15_read_without_token_counts() -> None:
    profile = load_profile("llama_cpp")
    old = {"status_code": 200, "output": " more", "conversation": "", "error": "", "prompt_remaining": "",
           "generated_eog": False}  # fmt: skip
    (value,) = read_reply("run_update", sim.encode([RUN_RESULT_V014], [{"Ok": old}]),
                          profile.service.methods["run_update"].rets)  # fmt: skip
    assert value["Ok"]["output"] == " more" and value["Ok"]["n_tokens_generated"] is None
    with pytest.raises(CanisterRefused, match="Model not yet loaded"):
        err = {"Err": {**old, "error": "Model not yet loaded"}}
        read_reply(
            "run_update", sim.encode([RUN_RESULT_V014], [err]), profile.service.methods["run_update"].rets
        )


def test_icpp_llama2_inference_without_num_tokens() -> None:
    """Builds from the stale llama2_c/llama2.did reply `record { inference : text }`."""
    profile = load_profile("icpp_llama2")
    stale = sim.variant(Err=sim.variant(Other=sim.TEXT), Ok=sim.record(inference=sim.TEXT))
    spec = next(c.call for c in profile.smoke.calls if c.tokens)
    reply = interpret_reply(profile, spec, sim.encode([stale], [{"Ok": {"inference": "Once upon"}}]))
    assert reply == {"inference": "Once upon", "num_tokens": None}


def test_a_reply_that_does_not_fit_names_the_field() -> None:
    profile = load_profile("llama_cpp")
    spec = profile.role("model").size
    wrong = sim.variant(Ok=sim.record(filesize=sim.TEXT, exists=sim.BOOL, filename=sim.TEXT, msg=sim.TEXT))
    ok = {"filesize": "12", "exists": True, "filename": "f", "msg": ""}
    with pytest.raises(PrepError, match="filesystem_file_size .* Ok: filesize: expected nat64, got text"):
        interpret_reply(profile, spec, sim.encode([wrong], [{"Ok": ok}]))


# ---- property: anything icsim's codec encodes reads back at its own type ------------------------

PRIMITIVES = {
    sim.NAT: st.integers(0, 2**70), sim.INT: st.integers(-(2**70), 2**70),
    sim.NAT8: st.integers(0, 255), sim.NAT64: st.integers(0, 2**64 - 1),
    sim.INT32: st.integers(-(2**31), 2**31 - 1), sim.BOOL: st.booleans(),
    sim.TEXT: st.text(max_size=20), sim.NULL: st.none(), sim.FLOAT64: st.floats(allow_nan=False),
}  # fmt: skip
LABELS = st.sampled_from(["a", "b", "status_code", "Ok", "Err", "type", "n_tokens_generated"])


def typed_values() -> st.SearchStrategy[tuple[sim.Type, Any]]:
    """(icsim type, a value of it), nested a few levels."""
    base = st.sampled_from(list(PRIMITIVES)).flatmap(lambda t: PRIMITIVES[t].map(lambda v: (t, v)))

    def extend(inner: st.SearchStrategy[tuple[sim.Type, Any]]) -> st.SearchStrategy[tuple[sim.Type, Any]]:
        opt = inner.flatmap(lambda tv: st.sampled_from([None, tv[1]]).map(lambda v: (sim.Opt(tv[0]), v)))
        vec = inner.flatmap(
            lambda tv: st.lists(st.just(tv[1]), max_size=3).map(lambda vs: (sim.Vec(tv[0]), vs))
        )
        fields = st.dictionaries(LABELS, inner, min_size=1, max_size=3)
        rec = fields.map(
            lambda fs: (sim.record(**{k: t for k, (t, _) in fs.items()}), {k: v for k, (_, v) in fs.items()})
        )
        var = fields.flatmap(
            lambda fs: st.sampled_from(sorted(fs)).map(
                lambda tag: (sim.variant(**{k: t for k, (t, _) in fs.items()}), {tag: fs[tag][1]})
            )
        )
        return st.one_of(opt, vec, rec, var)

    return st.recursive(base, extend, max_leaves=8)


@settings(max_examples=100, deadline=None)
@given(typed_values())
def test_any_reply_reads_back_at_its_own_type(typed: tuple[sim.Type, Any]) -> None:
    kind, value = typed
    ((wire, decoded),) = decode_typed(sim.encode([kind], [value]))
    assert subtyping.check(wire, t(kind.did())).ok
    assert subtyping.coerce(decoded, wire, t(kind.did())) == plain(kind, value)


def plain(kind: sim.Type, value: Any) -> Any:
    """The value in pipeline.ic.candid's plain form: blobs (vec nat8) are bytes."""
    if kind == sim.BLOB:
        return bytes(value)
    if isinstance(kind, sim.Opt):
        return None if value is None else plain(kind.inner, value)
    if isinstance(kind, sim.Vec):
        return [plain(kind.inner, v) for v in value]
    if isinstance(kind, sim.Record | sim.Variant):
        types = dict(kind.fields)
        return {name: plain(types[name], v) for name, v in value.items()}
    return value
