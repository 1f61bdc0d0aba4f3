"""Canister kind profiles: canisters/<kind>/profile.toml + service.did, loaded and checked.

A profile says how to put files into one kind of canister: chunk size, addressing (`offset` or `append`),
per file role the upload / resume / reset / read-back calls, the steps after the bytes, limits and the
access check; how to ask its model a prompt (`[smoke]`, pipeline.targets.dialogue); and what is known of
its releases (`[releases]`). Call arguments are templates (see pipeline.targets.calls); the Candid types
come from the kind's service.did, so a canister that speaks an existing protocol with other method names
is a new folder, not new code. A call only some releases answer is `optional`, with the `fallback` prep
calls instead where a canister lacks it (pipeline.targets.interface decides, from its Candid).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.errors import PrepError, UsageError
from pipeline.formats.names import DESCRIPTIONS as FORMATS
from pipeline.ic.candid import ServiceInterface, parse_service
from pipeline.targets.dialogue import SmokeDialogue, read_dialogue
from pipeline.targets.tuning import TuneCalls, read_tune

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_MAX_CHUNK_SIZE = 1_900_000
# The IC refuses ingress messages over 2 MiB, envelope included; keep room for the ~300 B envelope.
HARD_MAX_CHUNK_SIZE = 2 * 1024 * 1024 - 4096
ADDRESSING = ("offset", "append")
MAX_REMOTE_NAME = 255
_KIND_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_REMOTE_NAME = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
LENGTH_AFTER = ("file", "empty")


@dataclass(frozen=True)
class CallSpec:
    """One canister call: method, argument template, and what to read from the reply."""

    method: str
    args: tuple[Any, ...] = ()
    value: str | None = None  # dotted path into the reply (after unwrapping Ok) giving the answer
    exists: str | None = None  # dotted path to a bool telling whether the remote file exists
    error_when_some: bool = False  # replies of type `opt text` where a text means failure
    probe: bool = False  # a readiness check: safe to repeat, run even when nothing was uploaded
    consumes: tuple[str, ...] = ()  # roles whose heap copy this step uses up (brought back first if kept)
    optional: bool = False  # only some canister versions have the method (see `fallback`)
    fallback: CallSpec | None = None  # what prep calls instead where the method is absent
    # An after-step that moves the role's bytes: what its length query must report once it ran,
    # "file" (the whole file) or "empty" (moved out), checked before the next step.
    length_after: str | None = None


@dataclass(frozen=True)
class StableCopy:
    """A role whose bytes outlive upgrades once one of its after-steps moved them to stable memory.

    Both are indexes into the role's `after`: once `after[kept_by]` ran, an upgrade loses only the heap
    copy, and rerunning the steps from `after[restore]` on (it copies the bytes back) recovers the role
    without sending its bytes again.
    """

    kept_by: int
    restore: int


@dataclass(frozen=True)
class RoleProfile:
    """How one file role (e.g. "model", "tokenizer") is uploaded."""

    name: str
    remote: str  # default remote name (a file path for offset kinds, the role for append kinds)
    upload: CallSpec
    size: CallSpec | None = None  # offset kinds: remote file size (and existence)
    read: CallSpec | None = None  # offset kinds: read a range back
    running_sha: CallSpec | None = None  # offset kinds: the canister's own sha256 of in-order uploads
    length: CallSpec | None = None  # append kinds: bytes received so far (the resume point)
    reset: CallSpec | None = None  # append kinds: start the file over
    after: tuple[CallSpec, ...] = ()  # steps once this role's bytes are in, in order
    stable: StableCopy | None = None  # append kinds: the bytes survive upgrades once a step stored them
    max_bytes: int | None = None
    format: str = ""  # what the canister's loader reads (pipeline.formats.validate), checked before sending
    architectures: tuple[str, ...] = ()
    limit_hint: str | None = None


@dataclass(frozen=True)
class AccessRule:
    """Who may upload: controllers (when `controllers`), or whoever `check` approves."""

    controllers: bool = True
    check: CallSpec | None = None


@dataclass(frozen=True)
class Resources:
    """What the kind's code spends, for the cycles estimate and the heap check (profile `[resources]`).

    `upload_instructions_per_byte`: per byte received (Candid decoding, hashing, storing);
    `load_instructions_per_byte`: per byte of the files the load steps read; `heap_overhead_bytes`: heap
    a loaded model needs beyond its files (context buffers, the module's own heap).
    """

    upload_instructions_per_byte: int = 2
    load_instructions_per_byte: int = 0
    heap_overhead_bytes: int = 0


@dataclass(frozen=True)
class ReleaseNotes:
    """What prep knows of the canister's released interfaces, for messages when one does not fit."""

    project: str = ""  # e.g. "onicai/llama_cpp_canister"
    checked: str = ""  # the releases whose interface passes prep's check, e.g. "v0.1.0 to v0.16.4"
    changes: dict[str, str] = field(default_factory=dict)  # method -> how it changed across releases


ROLE_CALLS = ("size", "read", "running_sha", "length", "reset")


@dataclass(frozen=True)
class TargetProfile:
    kind: str
    description: str
    directory: Path
    addressing: str  # "" for a smoke-only kind (no file roles)
    max_chunk_size: int
    roles: tuple[RoleProfile, ...]
    steps: tuple[CallSpec, ...]
    access: AccessRule
    defaults: dict[str, Any] = field(default_factory=dict)
    service: ServiceInterface | None = None
    smoke: SmokeDialogue | None = None
    releases: ReleaseNotes = field(default_factory=ReleaseNotes)
    resources: Resources = Resources()
    tune: TuneCalls | None = None  # how `prep tune` probes a loaded model (profile `[tune]`)

    def upload_roles(self) -> tuple[RoleProfile, ...]:
        """The file roles; a PrepError for a smoke-only kind (one without any)."""
        if not self.roles:
            raise PrepError(
                f"canister kind {self.kind} is smoke-only: prep does not upload into it",
                hint=f"ask it a prompt: prep smoke --kind {self.kind} --canister ID --prompt ...",
            )
        return self.roles

    def role(self, name: str) -> RoleProfile:
        for role in self.upload_roles():
            if role.name == name:
                return role
        raise UsageError(
            f"canister kind {self.kind} has no file role {name!r}",
            hint=f"roles of {self.kind}: {', '.join(r.name for r in self.roles)}",
        )

    def calls(self) -> list[CallSpec]:
        """Every call this profile may make, fallbacks included (what the live interface must fit)."""
        specs: list[CallSpec] = [*self.steps]
        if self.access.check:
            specs.append(self.access.check)
        for role in self.roles:
            specs += [role.upload, *role.after]
            specs += [s for s in (getattr(role, name) for name in ROLE_CALLS) if s]
        if self.smoke is not None:
            specs += self.smoke.specs()
        if self.tune is not None:
            specs += self.tune.specs()
        return specs + [spec.fallback for spec in specs if spec.fallback is not None]

    def methods_used(self) -> list[str]:
        return sorted({spec.method for spec in self.calls()})

    def optional_methods(self) -> set[str]:
        """Methods that only some canister versions have: every call of them is optional."""
        calls = self.calls()
        return {s.method for s in calls if s.optional} - {s.method for s in calls if not s.optional}

    def is_query(self, method: str) -> bool:
        assert self.service is not None
        return self.service.methods[method].is_query

    def without(self, absent: set[str]) -> TargetProfile:
        """This profile for a canister that lacks the optional methods `absent`: each of their calls
        is replaced by its fallback, or left out when it has none."""
        if not absent:
            return self

        def resolve(spec: CallSpec | None) -> CallSpec | None:
            if spec is None or spec.method not in absent:
                return spec
            return spec.fallback

        def present(specs: tuple[CallSpec, ...]) -> tuple[CallSpec, ...]:
            return tuple(s for s in map(resolve, specs) if s is not None)

        roles = tuple(
            replace(
                role,
                after=present(role.after),
                **{name: resolve(getattr(role, name)) for name in ROLE_CALLS},
            )
            for role in self.roles
        )
        smoke = self.smoke
        if smoke is not None:
            calls = tuple(replace(c, call=resolve(c.call)) for c in smoke.calls if resolve(c.call))
            smoke = replace(smoke, calls=calls, ready=resolve(smoke.ready))
        return replace(self, roles=roles, steps=present(self.steps), smoke=smoke)


def canisters_dir() -> Path:
    """Where kind folders live: $PREP_CANISTERS_DIR, else the kinds shipped with prep (package data)."""
    env = os.environ.get("PREP_CANISTERS_DIR")
    return Path(env) if env else (Path(__file__).resolve().parents[1] / "canister_kinds").resolve()


def known_kinds() -> list[str]:
    root = canisters_dir()
    return sorted(p.name for p in root.iterdir() if (p / "profile.toml").is_file()) if root.is_dir() else []


def is_kind_name(text: str) -> bool:
    """A kind named by its folder in canisters_dir(), not a path: it cannot lead out of that folder."""
    return bool(_KIND_NAME.fullmatch(text))


def remote_name_problem(name: str) -> str | None:
    """Why no canister kind prep knows can store a file called `name` (e.g. `models/model.gguf`), or None.

    Canister file systems take relative names; prep keeps to the portable file name characters, so the
    name reads the same in the canister, in the journal and on every operating system."""
    if not name:
        return "it is empty"
    if name.startswith("/"):
        return "it is absolute; names in a canister are relative, e.g. models/model.gguf"
    if ".." in name.split("/"):
        return "it contains '..'"
    if len(name) > MAX_REMOTE_NAME:
        return f"it is longer than {MAX_REMOTE_NAME} characters"
    if not _REMOTE_NAME.fullmatch(name):
        return "use letters, digits, '.', '_' and '-', with '/' between folder names"
    return None


def load_profile(kind_or_dir: str | Path) -> TargetProfile:
    """Loads a kind by name (a folder of canisters_dir()) or from an explicit folder path (a Path, or text
    with a '/' such as ./my_kind) holding profile.toml and service.did."""
    text = str(kind_or_dir)
    if isinstance(kind_or_dir, Path) or "/" in text or os.sep in text:
        directory = Path(kind_or_dir).expanduser()
    elif not is_kind_name(text):
        raise UsageError(
            f"{text!r} is not a canister kind name",
            hint=f"known kinds: {', '.join(known_kinds())}; give a kind folder as a path, e.g. ./{text}",
        )
    else:
        directory = canisters_dir() / text
    path = directory / "profile.toml"
    if not path.is_file():
        raise UsageError(
            f"unknown canister kind {text!r}: no {path}",
            hint=f"known kinds: {', '.join(known_kinds())}; or a folder with profile.toml and service.did",
        )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise PrepError(f"{path}: invalid TOML: {err}") from err
    did_path = directory / "service.did"
    if not did_path.is_file():
        raise PrepError(f"{did_path} is missing", hint="each canister kind folder needs the Candid it calls")
    service = parse_service(did_path.read_text(), str(did_path))
    profile = _Reader(path, data).profile(directory, service)
    _check_methods(profile, path)
    _check_consumed_roles(profile, path)
    return profile


class _Reader:
    """Turns the TOML tables into dataclasses, naming the file and key on every error."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def fail(self, key: str, expected: str) -> PrepError:
        return PrepError(f"{self.path}: key {key!r}: expected {expected}")

    def profile(self, directory: Path, service: ServiceInterface) -> TargetProfile:
        data = self.data
        known = {
            "kind",
            "description",
            "addressing",
            "max_chunk_size",
            "roles",
            "steps",
            "access",
            "defaults",
            "smoke",
            "releases",
            "resources",
            "tune",
        }
        self._no_unknown(data, known, "")
        roles_data = data.get("roles", [])
        if not isinstance(roles_data, list):
            raise self.fail("roles", "a list of [[roles]] tables (none for a smoke-only kind)")
        if not roles_data and "smoke" not in data:
            raise self.fail("roles", "at least one [[roles]] table, or a [smoke] dialogue")
        addressing = data.get("addressing", "")
        if roles_data and addressing not in ADDRESSING:
            raise self.fail("addressing", " or ".join(ADDRESSING))
        chunk = data.get("max_chunk_size", DEFAULT_MAX_CHUNK_SIZE)
        if not isinstance(chunk, int) or not 1 <= chunk <= HARD_MAX_CHUNK_SIZE:
            raise self.fail(
                "max_chunk_size", f"an integer from 1 to {HARD_MAX_CHUNK_SIZE} (2 MiB message limit)"
            )
        roles = tuple(self.role(r, f"roles[{i}]", addressing) for i, r in enumerate(roles_data))
        access_data = data.get("access", {})
        self._no_unknown(access_data, {"controllers", "check"}, "access.")
        access = AccessRule(
            controllers=bool(access_data.get("controllers", True)),
            check=self.call(access_data["check"], "access.check") if "check" in access_data else None,
        )
        return TargetProfile(
            kind=str(data.get("kind") or directory.name),
            description=str(data.get("description", "")),
            directory=directory,
            addressing=addressing,
            max_chunk_size=chunk,
            roles=roles,
            steps=tuple(self.call(s, f"steps[{i}]") for i, s in enumerate(data.get("steps", []))),
            access=access,
            defaults=dict(data.get("defaults", {})),
            service=service,
            smoke=read_dialogue(self, data["smoke"]) if "smoke" in data else None,
            releases=self.releases(data.get("releases", {})),
            resources=self.resources(data.get("resources", {})),
            tune=read_tune(self, data["tune"]) if "tune" in data else None,
        )

    def releases(self, data: Any) -> ReleaseNotes:
        if not isinstance(data, dict):
            raise self.fail("releases", "a [releases] table")
        self._no_unknown(data, {"project", "checked", "changes"}, "releases.")
        changes = data.get("changes", {})
        if not isinstance(changes, dict) or not all(isinstance(v, str) for v in changes.values()):
            raise self.fail("releases.changes", 'a table of method = "how it changed"')
        return ReleaseNotes(str(data.get("project", "")), str(data.get("checked", "")), dict(changes))

    def resources(self, data: Any) -> Resources:
        if not isinstance(data, dict):
            raise self.fail("resources", "a [resources] table")
        known = set(Resources.__dataclass_fields__)
        self._no_unknown(data, known, "resources.")
        for key, value in data.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise self.fail(f"resources.{key}", "a non-negative integer")
        return Resources(**data)

    def role(self, data: Any, key: str, addressing: str) -> RoleProfile:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise self.fail(f"{key}.name", "a role name")
        calls = ("upload", "size", "read", "running_sha", "length", "reset")
        self._no_unknown(
            data,
            {
                "name",
                "remote",
                "after",
                "stable",
                "max_bytes",
                "format",
                "architectures",
                "limit_hint",
                *calls,
            },
            f"{key}.",
        )
        if "upload" not in data:
            raise self.fail(f"{key}.upload", "an upload call table")
        if addressing == "offset" and not all(k in data for k in ("size", "read")):
            raise self.fail(
                f"{key}.size / {key}.read", "size and read calls (offset addressing verifies by reading back)"
            )
        if addressing == "append" and "length" not in data and "reset" not in data:
            raise self.fail(
                f"{key}.length / {key}.reset", "a length query or a reset call (append addressing)"
            )
        if data.get("format") not in FORMATS:
            raise self.fail(f"{key}.format", f"the file format its loader reads: one of {', '.join(FORMATS)}")
        parsed = {c: self.call(data[c], f"{key}.{c}") for c in calls if c in data}
        after = tuple(self.call(s, f"{key}.after[{i}]") for i, s in enumerate(data.get("after", [])))
        stable = (
            self.stable(data["stable"], f"{key}.stable", after, "length" in parsed)
            if "stable" in data
            else None
        )
        if any(spec.length_after for spec in after) and "length" not in parsed:
            raise self.fail(f"{key}.after", "no length_after without a length query to check it with")
        return RoleProfile(
            name=data["name"],
            remote=str(data.get("remote", data["name"])),
            after=after,
            stable=stable,
            max_bytes=data.get("max_bytes"),
            format=data["format"],
            architectures=tuple(data.get("architectures", ())),
            limit_hint=data.get("limit_hint"),
            **parsed,
        )

    def stable(self, data: Any, key: str, after: tuple[CallSpec, ...], has_length: bool) -> StableCopy:
        """`stable = { kept_by = "<after-step>", restore = "<later after-step>" }`."""
        if not isinstance(data, dict):
            raise self.fail(key, "a table { kept_by = <after-step method>, restore = <after-step method> }")
        self._no_unknown(data, {"kept_by", "restore"}, f"{key}.")
        methods = [spec.method for spec in after]
        index: dict[str, int] = {}
        for name in ("kept_by", "restore"):
            if data.get(name) not in methods:
                raise self.fail(
                    f"{key}.{name}", f"one of this role's after-steps ({', '.join(methods) or 'none'})"
                )
            index[name] = methods.index(data[name])
        if index["restore"] <= index["kept_by"]:
            raise self.fail(f"{key}.restore", f"an after-step that runs later than {data['kept_by']!r}")
        if not has_length:
            # Without a length query nothing shows that the restored copy is the uploaded file.
            raise self.fail(key, "a role with a length query (it checks the restored bytes)")
        return StableCopy(kept_by=index["kept_by"], restore=index["restore"])

    def call(self, data: Any, key: str, extra: frozenset[str] = frozenset()) -> CallSpec:
        if not isinstance(data, dict) or not isinstance(data.get("method"), str):
            raise self.fail(f"{key}.method", "a method name")
        known = {"method", "args", "value", "exists", "error_when_some", "probe", "consumes", "optional"}
        self._no_unknown(data, known | {"fallback", "length_after"} | extra, f"{key}.")
        length_after = data.get("length_after")
        if length_after is not None and length_after not in LENGTH_AFTER:
            raise self.fail(f"{key}.length_after", " or ".join(repr(v) for v in LENGTH_AFTER))
        consumes = data.get("consumes", [])
        if not isinstance(consumes, list) or not all(isinstance(c, str) for c in consumes):
            raise self.fail(f"{key}.consumes", "a list of role names")
        args = data.get("args", [])
        if not isinstance(args, list):
            raise self.fail(f"{key}.args", "a list of argument templates")
        return CallSpec(
            method=data["method"],
            args=tuple(args),
            value=data.get("value"),
            exists=data.get("exists"),
            error_when_some=bool(data.get("error_when_some", False)),
            probe=bool(data.get("probe", False)),
            consumes=tuple(consumes),
            optional=bool(data.get("optional", False)) or "fallback" in data,
            fallback=self.call(data["fallback"], f"{key}.fallback") if "fallback" in data else None,
            length_after=length_after,
        )

    def _no_unknown(self, data: dict[str, Any], known: set[str], prefix: str) -> None:
        unknown = sorted(set(data) - known)
        if unknown:
            raise self.fail(prefix + unknown[0], f"one of {', '.join(sorted(known))} (unknown key)")


def _check_consumed_roles(profile: TargetProfile, path: Path) -> None:
    """A step may only consume roles whose bytes can be brought back: roles with a stable copy."""
    kept = {role.name for role in profile.roles if role.stable is not None}
    for spec in profile.calls():
        for name in spec.consumes:
            if name not in kept:
                raise PrepError(
                    f"{path}: step {spec.method!r} consumes role {name!r}, which has no stable copy to "
                    "restore it from",
                    hint=f"roles with a stable copy: {', '.join(sorted(kept)) or 'none'}",
                )


def _check_methods(profile: TargetProfile, path: Path) -> None:
    assert profile.service is not None
    methods = profile.service.methods
    for spec in profile.calls():
        if spec.method not in methods:
            raise PrepError(f"{path}: method {spec.method!r} is not in {profile.directory / 'service.did'}")
        if len(spec.args) != len(methods[spec.method].args):
            raise PrepError(
                f"{path}: method {spec.method!r} takes {len(methods[spec.method].args)} argument(s), "
                f"the profile gives {len(spec.args)}"
            )
    for role in profile.roles:
        if profile.is_query(role.upload.method):
            raise PrepError(
                f"{path}: upload method {role.upload.method!r} is a query; uploads must be updates"
            )
        for name, spec in (("upload", role.upload), ("size", role.size), ("read", role.read)):
            if spec is not None and spec.optional and spec.fallback is None:
                raise PrepError(
                    f"{path}: role {role.name!r}: the {name} call {spec.method!r} is optional but has no "
                    "fallback; prep cannot upload without it"
                )
