"""`prep recipes new`: from a Hub repo id to recipes/NAME.toml for the file that suits the canister best.

The recipe pins the commit it was judged at and every file's size (and the LFS sha256 of model files),
loads with the arguments the heap estimate assumed, and smokes with a prompt rendered from the model's
own chat template. It is validated exactly as `prep recipes show` validates before it is written.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from pipeline.atomic import write_atomic
from pipeline.errors import UsageError
from pipeline.hub.hf import HubClient, HubSettings, RepoSnapshot
from pipeline.pick.candidates import JUDGES, list_candidates, pick
from pipeline.pick.heap import RAISED_WASM_MEMORY_LIMIT, load_args_for
from pipeline.pick.template import SmokePrompt, render_smoke_prompt
from pipeline.pick.verdicts import Candidate, RepoContext
from pipeline.recipes import RECIPE_SUFFIX, parse_recipe
from pipeline.targets.profile import TargetProfile, load_profile

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KINDS = tuple(JUDGES)
SMOKE_MAX_TOKENS = 20
SMOKE_EXPECT = "[A-Za-z]"
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_K_QUANTS = ("q6_k", "q5_k_m", "q4_k_m")


@dataclass(frozen=True)
class NewRecipe:
    repo: str
    revision: str
    commit: str
    kind: str
    candidates: tuple[Candidate, ...]
    choice: Candidate
    why: str
    name: str
    path: Path
    licence: str
    prompt: SmokePrompt
    notes: tuple[str, ...] = field(default=())

    @property
    def header_bytes(self) -> int:
        return sum(c.header_bytes for c in self.candidates)

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "revision": self.revision,
            "commit": self.commit,
            "kind": self.kind,
            "candidates": [c.summary() for c in self.candidates],
            "choice": self.choice.name,
            "why": self.why,
            "name": self.name,
            "recipe": str(self.path),
            "licence": self.licence,
            "smoke_prompt": self.prompt.text,
            "smoke_prompt_source": self.prompt.source,
            "notes": list(self.notes),
            "header_bytes": self.header_bytes,
        }


def new_recipe(
    repo: str,
    *,
    kind: str = "llama_cpp",
    name: str | None = None,
    revision: str = "main",
    pick_file: str | None = None,
    force: bool = False,
    recipes_dir: Path | None = None,
) -> NewRecipe:
    """Judges the repo's files for `kind`, picks one and writes recipes_dir/NAME.toml (atomically)."""
    if not _REPO_RE.match(repo):
        raise UsageError(
            f"{repo!r} is not a Hugging Face repo id", hint="give it as owner/name, e.g. Qwen/Qwen3-0.6B-GGUF"
        )
    if kind not in KINDS:
        raise UsageError(
            f"--kind {kind!r}: prep recipes new writes recipes for {', '.join(KINDS)}",
            hint="prep kinds list shows each kind and the files it takes",
        )
    directory = recipes_dir or Path.cwd() / "recipes"
    if name is not None:
        _check_free(_recipe_path(directory, name), force)
    profile = load_profile(kind)
    client = HubClient(HubSettings.from_env())
    snapshot = client.snapshot(repo, revision)
    candidates = list_candidates(RepoContext(client, snapshot, profile))
    choice, why = pick(candidates, pick_file)
    name = name or default_name(repo, choice)
    path = _recipe_path(directory, name)
    _check_free(path, force)
    prompt = render_smoke_prompt(choice.chat_template, choice.template_source, eos_token=choice.eos_token)
    licence = licence_of(snapshot)
    data = recipe_data(snapshot, profile, choice, prompt, licence)
    text = tomli_w.dumps(data, multiline_strings=False)
    parse_recipe(path, tomllib.loads(text))
    write_atomic(path, text.encode())
    return NewRecipe(
        repo, revision, snapshot.commit, kind, tuple(candidates), choice, why, name, path, licence, prompt,
        tuple(_notes(choice, prompt)),
    )  # fmt: skip


def _recipe_path(directory: Path, name: str) -> Path:
    if not _NAME_RE.match(name):
        raise UsageError(
            f"--name {name!r}: use lowercase letters, digits, '.', '_' or '-'",
            hint="the name becomes recipes/NAME.toml; leave --name out to take it from the chosen file",
        )
    return directory / f"{name}{RECIPE_SUFFIX}"


def _check_free(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", hint="choose another --name, or --force to overwrite it")


def default_name(repo: str, choice: Candidate) -> str:
    """The chosen file's stem (e.g. qwen3-1.7b-q6_k), or the repo name and the conversion type."""
    if choice.build and choice.build["kind"] == "passthrough":
        stem = Path(choice.name).stem
    else:
        stem = repo.split("/", 1)[1] + (
            f"-{choice.quant}" if choice.build and choice.build["kind"] == "convert" else ""
        )
    name = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._")
    return name or "model"


def licence_of(snapshot: RepoSnapshot) -> str:
    """The licence the model card declares (license, or license_name/license_link for "other")."""
    card = snapshot.card
    licence = card.get("license")
    if isinstance(licence, list):
        licence = ", ".join(str(x) for x in licence)
    if licence == "other" and (card.get("license_name") or card.get("license_link")):
        licence = f"other: {card.get('license_name') or card.get('license_link')}"
    where = f"model card of {snapshot.repo}"
    base = card.get("base_model")
    if isinstance(base, str):
        where += f"; base model {base}"
    if not licence:
        return f"unknown: the {where} declares no licence; read it before use"
    return f"{licence} ({where})"


def recipe_data(
    snapshot: RepoSnapshot, profile: TargetProfile, choice: Candidate, prompt: SmokePrompt, licence: str
) -> dict[str, Any]:
    files = snapshot.files
    hub_source: dict[str, Any] = {
        "repo": snapshot.repo,
        "revision": snapshot.commit,
        "files": list(choice.files),
    }
    pins = {f: files[f].lfs_sha256 for f in choice.files if files[f].lfs_sha256}
    if pins:
        hub_source["sha256"] = pins
    hub_source["size"] = {f: files[f].size for f in choice.files}
    target: dict[str, Any] = {
        "kind": profile.kind,
        "files": {role.name: role.remote for role in profile.roles},
    }
    if profile.kind == "llama_cpp":
        target["load_args"] = load_args_for(profile.role("model").remote, choice.shape)
    target["smoke"] = {"prompt": prompt.text, "max_tokens": SMOKE_MAX_TOKENS, "expect": SMOKE_EXPECT}
    description = (
        f"{snapshot.repo.split('/', 1)[1]} {choice.quant or ''} ({choice.name}) for {profile.kind}, "
        f"picked by prep recipes new: {choice.detail}"
    )
    return {
        "description": description,
        "licence": licence,
        "source": [hub_source, *choice.extra_sources] if choice.extra_sources else hub_source,
        "build": choice.build,
        "target": target,
    }


def _notes(choice: Candidate, prompt: SmokePrompt) -> list[str]:
    notes = []
    if choice.memory_limit is not None:
        notes.append(
            f"raise the canister's wasm_memory_limit before loading: "
            f"dfx canister update-settings <canister> --wasm-memory-limit {RAISED_WASM_MEMORY_LIMIT}"
        )
    if choice.build and choice.build.get("quantize") in _K_QUANTS:
        notes.append(
            f"building quantizes to {choice.build['quantize']}: that needs the llama extra (make install)"
        )
    notes.append(f"smoke prompt: {prompt.source}")
    return notes
