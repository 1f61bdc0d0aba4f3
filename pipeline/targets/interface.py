"""Can prep drive a canister with this Candid interface as a given kind? Decided by Candid subtyping.

For each method the kind's profile calls (uploads, steps, smoke dialogue, fallbacks): prep's arguments
must decode at the canister's argument types, and the canister's results must decode at the types in
the kind's service.did (records may lack optional fields or carry more, variants may have fewer cases,
...). A method that only some releases have is optional in the profile; where it is absent prep uses
the declared fallback. Used by `prep kinds check`, `prep canister info`, `prep upload` and `prep smoke`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.errors import PrepError
from pipeline.ic import subtyping
from pipeline.ic.candid import MethodType, ServiceInterface, parse_service
from pipeline.ic.client import IcClient
from pipeline.ic.errors import PermanentIcError
from pipeline.targets.profile import TargetProfile, known_kinds, load_profile


@dataclass(frozen=True)
class KindFit:
    kind: str
    matches: bool
    problems: tuple[str, ...]  # why not, one sentence per method
    fallbacks: tuple[str, ...]  # optional methods the canister lacks, and what prep does instead
    notes: tuple[str, ...]  # places Candid accepts but reads as null
    absent: tuple[str, ...]  # the optional methods the canister lacks

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_kind(
    profile: TargetProfile, live: ServiceInterface, methods: Collection[str] | None = None
) -> KindFit:
    """Whether `live` can be driven as `profile`'s kind (or for just `methods`), and if not, why."""
    assert profile.service is not None
    optional = profile.optional_methods()
    problems: list[str] = []
    notes: list[str] = []
    absent: list[str] = []
    for name in profile.methods_used():
        if methods is not None and name not in methods:
            continue
        wanted, have = profile.service.methods[name], live.methods.get(name)
        if have is None:
            if name in optional:
                absent.append(name)
            else:
                problems.append(_missing(profile, name))
            continue
        mismatch, lossy = method_fits(wanted, have)
        if mismatch is not None:
            problems.append(_explain(profile, name, f"{name} {mismatch}"))
        notes += [f"{name} {place}" for place in lossy]
    return KindFit(
        kind=profile.kind,
        matches=not problems,
        problems=tuple(problems),
        fallbacks=tuple(_fallback_note(profile, name) for name in absent),
        notes=tuple(notes),
        absent=tuple(absent),
    )


def method_fits(wanted: MethodType, have: MethodType) -> tuple[str | None, list[str]]:
    """(why `have` cannot stand in for `wanted`, or None; places only read as null)."""
    if sorted(wanted.modes) != sorted(have.modes):
        return f"is {_mode(have)} on the canister, prep calls it as {_mode(wanted)}", []
    lossy: list[str] = []
    for fit in (
        subtyping.check_sequence(wanted.args, have.args, "argument"),
        subtyping.check_sequence(have.rets, wanted.rets, "result"),
    ):
        lossy += [_where(m) for m in fit.lossy]
        if fit.mismatch is not None:
            return _where(fit.mismatch), lossy
    return None, lossy


def fit_to_canister(
    client: IcClient,
    canister_id: str,
    profile: TargetProfile,
    *,
    methods: Collection[str] | None = None,
    required: bool = False,
) -> TargetProfile:
    """`fitted` to the canister's candid:service metadata. Without metadata (absent, or private to its
    controllers): the profile unchanged, or, when `required`, a PrepError."""
    try:
        raw = client.metadata(canister_id, "candid:service")
    except PermanentIcError:
        raw = None
    if raw is None:
        if required:
            raise PrepError(
                f"canister {canister_id} publishes no candid:service metadata, so prep cannot check that it "
                f"is a {profile.kind} canister",
                hint="rebuild it with its .did as candid:service metadata, or pass --no-interface-check "
                "if you are sure of --kind",
            )
        return profile
    live = parse_service(raw.decode("utf-8", errors="replace"), f"canister {canister_id}'s candid:service")
    return fitted(profile, live, f"canister {canister_id}", methods)


def fitted(
    profile: TargetProfile, live: ServiceInterface, canister: str, methods: Collection[str] | None = None
) -> TargetProfile:
    """The profile to drive `live` with (fallbacks in place), or an InterfaceMismatch saying why not.
    `methods` limits the check to the calls about to be made (e.g. the smoke dialogue's)."""
    fit = fit_kind(profile, live, methods)
    if not fit.matches:
        others = [
            kind
            for kind in known_kinds()
            if kind != profile.kind and fit_kind(load_profile(kind), live).matches
        ]
        raise InterfaceMismatch(profile, fit, canister, others)
    return profile.without(set(fit.absent))


class InterfaceMismatch(PrepError):
    """A canister's interface that the kind cannot drive; the message says which method and field."""

    def __init__(self, profile: TargetProfile, fit: KindFit, canister: str, fitting: list[str]) -> None:
        more = f" (and {len(fit.problems) - 3} more)" if len(fit.problems) > 3 else ""
        super().__init__(
            f"{canister} does not fit canister kind {profile.kind}: {'; '.join(fit.problems[:3])}{more}",
            hint=what_to_do(profile, fitting),
        )
        self.fit = fit


def what_to_do(profile: TargetProfile, fitting: list[str]) -> str:
    if fitting:
        return f"its interface fits kind {' and '.join(fitting)}: pick --kind {fitting[0]}"
    notes = profile.releases
    release = (
        f"deploy a {notes.project} release that prep is checked against ({notes.checked}); "
        if notes.project and notes.checked
        else ""
    )
    return f"{release}if it is another kind of canister, prep kinds check FILE.did says which kinds fit"


def fit_known_kinds(live: ServiceInterface) -> tuple[KindFit, ...]:
    """How `live` fits each known kind (canisters/ or $PREP_CANISTERS_DIR)."""
    return tuple(fit_kind(load_profile(kind), live) for kind in known_kinds())


def _missing(profile: TargetProfile, method: str) -> str:
    notes = profile.releases
    if notes.project and notes.checked:  # every checked release fits, so each has the method
        return f"method {method} is missing ({notes.project} {notes.checked} all have it)"
    return f"method {method} is missing"


def _explain(profile: TargetProfile, method: str, problem: str) -> str:
    change = profile.releases.changes.get(method)
    return (
        f"{problem} (known {profile.releases.project or profile.kind} changes: {change})"
        if change
        else problem
    )


def _fallback_note(profile: TargetProfile, method: str) -> str:
    fallbacks = {s.fallback.method for s in profile.calls() if s.method == method and s.fallback}
    instead = f"prep calls {', '.join(sorted(fallbacks))} instead" if fallbacks else "prep does without it"
    change = profile.releases.changes.get(method)
    return f"{method} is absent: {instead}" + (f" ({change})" if change else "")


def _where(mismatch: subtyping.Mismatch) -> str:
    head, *rest = mismatch.path or ("",)
    place = f"{head}, at {'.'.join(rest)}" if rest else head
    return f"{place}: {mismatch.reason}" if place else mismatch.reason


def _mode(method: MethodType) -> str:
    return f"a {' '.join(method.modes).replace('_', ' ')}" if method.modes else "an update"
