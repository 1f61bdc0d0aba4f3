"""Candid service descriptions: parse a .did, compare method signatures, build argument types.

Parsing uses `ic_candid_parser` (shipped with icp-py-core), which returns the AST as JSON; icp-py-core's
DIDLoader turns the same text into the agent's type objects that the encoder needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from _ic_candid_core import _ic_candid_core as candid_parser
from icp_candid.candid import get_field_hash
from icp_candid.did_loader import DIDLoader

from pipeline.errors import PrepError


@dataclass(frozen=True)
class MethodSignature:
    """One method as a canonical text per argument / result type, with names resolved and fields sorted."""

    name: str
    args: tuple[str, ...]
    rets: tuple[str, ...]
    query: bool

    def describe(self) -> str:
        mode = " query" if self.query else ""
        return f"{self.name} : ({', '.join(self.args)}) -> ({', '.join(self.rets)}){mode}"


@dataclass(frozen=True)
class ServiceInterface:
    """The methods of a Candid service, plus what is needed to encode their arguments."""

    methods: dict[str, MethodSignature]
    arg_types: dict[str, list[Any]]  # method -> icp_candid types of its arguments
    arg_ast: dict[str, list[dict]]  # method -> JSON AST of its arguments (names resolved lazily)
    env: dict[str, dict]
    labels: dict[int, str]  # Candid field hash -> field name, for naming wire-decoded replies

    def resolve(self, node: dict) -> dict:
        """Follows type aliases (`Id` nodes) to the structural type."""
        seen: set[str] = set()
        while node["type"] == "Id" and node["value"] not in seen:
            seen.add(node["value"])
            node = self.env[node["value"]]
        return node


def parse_service(text: str, *, source: str) -> ServiceInterface:
    """Parses a .did text; `source` names it in errors (a file path or "canister X's candid:service")."""
    try:
        ast = json.loads(candid_parser.parse_did(text))
        loaded = DIDLoader().load_did_source(text)
    except ValueError as err:
        raise PrepError(f"{source}: not a valid Candid service description: {err}") from err
    env = {entry["name"]: entry["datatype"] for entry in ast.get("env") or []}
    methods_ast = (ast.get("actor") or {}).get("methods") or []
    methods: dict[str, MethodSignature] = {}
    arg_ast: dict[str, list[dict]] = {}
    labels: dict[int, str] = {get_field_hash("Ok"): "Ok", get_field_hash("Err"): "Err"}
    for method in methods_ast:
        canon = _Canonicalizer(env, labels)
        methods[method["name"]] = MethodSignature(
            name=method["name"],
            args=tuple(canon.text(t) for t in method["args"]),
            rets=tuple(canon.text(t) for t in method["rets"]),
            query="query" in method["modes"] or "composite_query" in method["modes"],
        )
        arg_ast[method["name"]] = method["args"]
    arg_types = {name: list(func.args) for name, func in loaded["methods"].items()}
    return ServiceInterface(methods=methods, arg_types=arg_types, arg_ast=arg_ast, env=env, labels=labels)


def interface_problems(expected: ServiceInterface, live: ServiceInterface, used: list[str]) -> list[str]:
    """What differs between the methods we call (`used`) and the live canister's; empty when they match."""
    problems = []
    for name in used:
        want = expected.methods[name]
        have = live.methods.get(name)
        if have is None:
            problems.append(f"method {name} missing")
        elif have != want:
            problems.append(
                f"method {name} different: canister has `{have.describe()}`, expected `{want.describe()}`"
            )
    return problems


class _Canonicalizer:
    """Renders a type AST as one canonical string; recursive aliases render as `rec <name>`."""

    def __init__(self, env: dict[str, dict], labels: dict[int, str]) -> None:
        self.env = env
        self.labels = labels
        self.open: set[str] = set()

    def text(self, node: dict) -> str:
        kind, value = node["type"], node["value"]
        if kind == "Prim":
            return value
        if kind == "Principal":
            return "principal"
        if kind == "Id":
            if value in self.open:
                return f"rec {value}"
            self.open.add(value)
            try:
                return self.text(self.env[value])
            finally:
                self.open.discard(value)
        if kind in ("Vec", "Opt"):
            return f"{kind.lower()} {self.text(value)}"
        if kind in ("Record", "Variant"):
            return f"{kind.lower()} {{{self._fields(value)}}}"
        return kind.lower()  # func / service references: we never call through them

    def _fields(self, fields: list[list]) -> str:
        rendered = []
        for label, node in fields:
            key = int(label) if label.isdigit() else get_field_hash(label)
            if not label.isdigit():
                self.labels[key] = label
            rendered.append((key, f"{label}: {self.text(node)}"))
        return "; ".join(text for _, text in sorted(rendered))
