"""Which canisters a fleet command works on: `--canister` repeated, or a FLEET.toml file.

A fleet file lists canisters (an id, or a name from the project's canister_ids.json) with optional
defaults at the top that each canister may override: network, who signs (identity or pem), the recipe,
and tweaks to the recipe's [target] for that canister alone. Every key is validated like a recipe's;
a PEM path is relative to the fleet file's folder.

    network = "ic"
    identity = "deployer"
    recipe = "qwen2.5-0.5b"

    [[canister]]
    name = "llm_0"

    [[canister]]
    id = "rrkah-fqaaa-aaaaa-aaaaq-cai"
    [canister.target]
    max_tokens_update = 20
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError
from pipeline.toml_table import TomlTable, is_positive_int, is_string_list

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

FLEET_HINT = "README.md (Fleets) shows a FLEET.toml with every key"
MAX_FLEET_FILE_BYTES = 1_000_000
MAX_MEMBERS = 500  # a fleet of this many is already far beyond the largest known (~30 canisters)
# Recipe [target] keys one canister may set for itself; the files and the kind stay the recipe's.
TARGET_OVERRIDES = ("load_args", "max_tokens_update", "max_tokens_query")


@dataclass(frozen=True)
class FleetMember:
    """One canister of a fleet, as written: None means "what the command line (or the file's top) says"."""

    canister: str  # an id or a name from canister_ids.json
    network: str | None = None
    identity: str | None = None
    pem: Path | None = None
    recipe: str | None = None
    target: dict[str, Any] = field(default_factory=dict)  # overrides of TARGET_OVERRIDES


@dataclass(frozen=True)
class Fleet:
    members: tuple[FleetMember, ...]
    path: Path | None = None  # the fleet file, when there is one

    @property
    def recipes(self) -> set[str]:
        return {m.recipe for m in self.members if m.recipe is not None}


def fleet_of(canisters: Sequence[str], fleet_file: Path | None) -> Fleet:
    """The fleet the options name: `--canister` (repeatable) or `--fleet FILE`, not both."""
    if fleet_file is not None and canisters:
        raise UsageError(
            "give --canister (repeatable) or --fleet FILE, not both",
            hint="list every canister in the fleet file instead",
        )
    if fleet_file is not None:
        return load_fleet(fleet_file)
    if not canisters:
        raise UsageError(
            "name a canister: --canister ID_OR_NAME (repeatable) or --fleet FLEET.toml",
            hint="e.g. --canister rrkah-fqaaa-aaaaa-aaaaq-cai, or a name from canister_ids.json",
        )
    members = tuple(FleetMember(_canister_text(c, "--canister")) for c in canisters)
    _refuse_duplicates(members, "--canister")
    return Fleet(members)


def load_fleet(path: Path) -> Fleet:
    """A FLEET.toml, fully validated (unknown keys, bad values and duplicate canisters are errors)."""
    top = TomlTable(path, "", _read(path), FLEET_HINT)
    defaults = _member_keys(top, path)
    listed = top.get("canister", "a list of [[canister]] tables", _is_table_list)
    top.done()
    if not listed:
        raise UsageError(f"{path}: lists no canister", hint="add a [[canister]] table with an id or a name")
    if len(listed) > MAX_MEMBERS:
        raise UsageError(
            f"{path}: lists {len(listed):,} canisters; at most {MAX_MEMBERS} are supported",
            hint="split the fleet into several files",
        )
    members = []
    for index, data in enumerate(listed):
        table = TomlTable(path, f"canister[{index}]", data, FLEET_HINT)
        canister = _member_canister(table)
        own = _member_keys(table, path)
        table.done()
        members.append(_merged(canister, defaults, own))
    fleet = Fleet(tuple(members), path)
    _refuse_duplicates(fleet.members, str(path))
    return fleet


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FLEET_FILE_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"fleet file {path} does not exist", hint=FLEET_HINT) from None
    except OSError as err:
        raise UsageError(f"cannot read fleet file {path}: {err.strerror or err}", hint=FLEET_HINT) from None
    if len(raw) > MAX_FLEET_FILE_BYTES:
        raise UsageError(
            f"{path}: over {MAX_FLEET_FILE_BYTES:,} bytes; that is not a fleet file", hint=FLEET_HINT
        )
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text", hint=FLEET_HINT) from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path}: not valid TOML: {err}", hint=FLEET_HINT) from None


def _member_canister(table: TomlTable) -> str:
    has_id, has_name = "id" in table.data, "name" in table.data
    if has_id == has_name:
        raise UsageError(
            f"{table.file}: `{table.prefix}` needs exactly one of `id` (a canister id) or `name` "
            "(a name from the project's canister_ids.json)",
            hint=FLEET_HINT,
        )
    key = "id" if has_id else "name"
    return _canister_text(table.string(key), f"{table.file}: `{table.key(key)}`")


def _member_keys(table: TomlTable, path: Path) -> dict[str, Any]:
    """The keys a canister (or the file's top, for every canister) may set; only those present."""
    found: dict[str, Any] = {}
    for key in ("network", "identity", "recipe"):
        if key in table.data:
            found[key] = table.string(key)
    if "pem" in table.data:
        found["pem"] = (path.parent / Path(table.string("pem")).expanduser()).resolve()
    table.seen.update(("network", "identity", "recipe", "pem"))
    if "identity" in found and "pem" in found:
        raise UsageError(
            f"{path}: `{table.prefix or 'top level'}` sets both `identity` and `pem`",
            hint="keep one: they both say who signs",
        )
    target = table.optional_sub("target")
    if target is not None:
        overrides = {}
        if "load_args" in target.data:
            overrides["load_args"] = tuple(
                target.get("load_args", "a list of strings", lambda v: v == [] or is_string_list(v))
            )
        for key in ("max_tokens_update", "max_tokens_query"):
            if key in target.data:
                overrides[key] = target.get(key, "a positive integer", is_positive_int)
        target.done()
        found["target"] = overrides
    return found


def _merged(canister: str, defaults: dict[str, Any], own: dict[str, Any]) -> FleetMember:
    signer = own if ("identity" in own or "pem" in own) else defaults
    return FleetMember(
        canister,
        network=own.get("network", defaults.get("network")),
        identity=signer.get("identity"),
        pem=signer.get("pem"),
        recipe=own.get("recipe", defaults.get("recipe")),
        target={**defaults.get("target", {}), **own.get("target", {})},
    )


def _canister_text(text: str, where: str) -> str:
    text = text.strip()
    if not text or len(text) > 128 or any(c.isspace() or not c.isprintable() for c in text):
        raise UsageError(f"{where}: {text!r} is not a canister id or name", hint=FLEET_HINT)
    return text


def _refuse_duplicates(members: Sequence[FleetMember], where: str) -> None:
    seen: set[tuple[str, str | None]] = set()
    for member in members:
        key = (member.canister, member.network)
        if key in seen:
            raise UsageError(
                f"{where}: canister {member.canister} is listed twice",
                hint="each canister gets one upload; list it once",
            )
        seen.add(key)


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)
