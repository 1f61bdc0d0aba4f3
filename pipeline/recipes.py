"""Recipe schema and loader: recipes/<name>.toml says what to fetch, how to build it and where it goes.

Every key is validated; an unknown key or a bad value is an error naming the file, the dotted key and
what was expected, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.atomic import write_atomic
from pipeline.errors import UsageError
from pipeline.targets.profile import is_kind_name, known_kinds, load_profile, remote_name_problem
from pipeline.toml_table import TomlTable

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

RECIPES_FOLDER = "recipes"
RECIPE_HINT = "README.md (Writing a recipe) lists every key; `prep recipes show NAME` prints a working one"
RECIPE_SUFFIX = ".toml"
LOCK_SUFFIX = ".lock.json"

BUILD_KINDS = ("passthrough", "convert", "trim_gpt2")
CONVERT_OUTTYPES = ("f32", "f16", "bf16", "q8_0")
QUANTIZE_TYPES = (
    "q8_0",
    "q4_0",
    "q4_1",
    "q5_0",
    "q5_1",
    "q2_k",
    "q3_k_s",
    "q3_k_m",
    "q3_k_l",
    "q4_k_s",
    "q4_k_m",
    "q5_k_s",
    "q5_k_m",
    "q6_k",
)
TRIM_DTYPES = ("f32", "f16")

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class HubSource:
    """Files from a Hugging Face model repo; `files` are fnmatch patterns over the repo tree."""

    repo: str
    revision: str
    files: tuple[str, ...]
    sha256: dict[str, str]
    size: dict[str, int]

    @property
    def label(self) -> str:
        return f"{self.repo}@{self.revision}"


@dataclass(frozen=True)
class UrlSource:
    """One file from a plain HTTPS URL; the sha256 is required because nothing else vouches for it."""

    url: str
    filename: str
    sha256: str
    size: int | None

    @property
    def label(self) -> str:
        return self.url


Source = HubSource | UrlSource


@dataclass(frozen=True)
class BuildSpec:
    kind: str
    outtype: str | None = None
    quantize: str | None = None
    dtype: str | None = None
    files: dict[str, str] | None = None


@dataclass(frozen=True)
class SmokeSpec:
    prompt: str
    max_tokens: int
    expect: str


@dataclass(frozen=True)
class TargetSpec:
    kind: str
    files: dict[str, str]
    load_args: tuple[str, ...]
    max_tokens_update: int | None
    max_tokens_query: int | None
    smoke: SmokeSpec


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    licence: str
    sources: tuple[Source, ...]
    build: BuildSpec
    target: TargetSpec
    path: Path

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.name + LOCK_SUFFIX)

    @property
    def known_size(self) -> int | None:
        """Total bytes of the pinned sources, when every source declares its sizes."""
        total = 0
        for source in self.sources:
            if isinstance(source, UrlSource):
                if source.size is None:
                    return None
                total += source.size
            else:
                literal = [p for p in source.files if not _is_pattern(p)]
                if len(literal) != len(source.files) or any(p not in source.size for p in literal):
                    return None
                total += sum(source.size[p] for p in literal)
        return total


def _is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[")


def _parse_hub_source(table: TomlTable) -> HubSource:
    repo = table.get(
        "repo", "a repo id like `owner/name`", lambda v: isinstance(v, str) and _REPO_RE.match(v)
    )
    revision = table.string("revision", "main")
    files = table.string_list("files")
    sha256 = _parse_sha_map(table)
    size_table = table.optional_sub("size")
    size: dict[str, int] = {}
    if size_table is not None:
        size = {k: size_table.positive_int(k) for k in size_table.data}
    for kind, names in (("sha256", sha256), ("size", size)):
        for name in names:
            if not any(fnmatch.fnmatchcase(name, p) for p in files):
                raise table.error(
                    table.key(f"{kind}.{name}"),
                    "about a file matched by `files`",
                    f"no pattern matches {name!r}",
                )
    table.done()
    return HubSource(repo=repo, revision=revision, files=files, sha256=sha256, size=size)


def _parse_sha_map(table: TomlTable) -> dict[str, str]:
    sha_table = table.optional_sub("sha256")
    if sha_table is None:
        return {}
    return {k: sha_table.get(k, "a sha256 of 64 lowercase hex digits", _is_sha256) for k in sha_table.data}


def is_repo_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_REPO_RE.match(value))


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and bool(_SHA256_RE.match(value))


def _parse_url_source(table: TomlTable) -> UrlSource:
    url = table.get(
        "url",
        "an https:// or http:// URL",
        lambda v: isinstance(v, str) and v.startswith(("https://", "http://")),
    )
    default_name = url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    filename = table.get(
        "filename",
        "a plain file name (no slashes)",
        lambda v: isinstance(v, str) and v and "/" not in v and v not in (".", ".."),
        default_name or ...,
    )
    sha256 = table.get(
        "sha256", "a sha256 of 64 lowercase hex digits (URL sources must be pinned)", _is_sha256
    )
    size = table.positive_int("size", None)
    table.done()
    return UrlSource(url=url, filename=filename, sha256=sha256, size=size)


def _parse_source(file: Path, prefix: str, data: Any) -> Source:
    table = TomlTable(file, prefix, data, RECIPE_HINT)
    if "url" in table.data and "repo" in table.data:
        raise UsageError(f"{file}: `{prefix}` must have either `repo` or `url`, not both", hint=RECIPE_HINT)
    if "url" in table.data:
        return _parse_url_source(table)
    if "repo" not in table.data:
        raise table.error(table.key("repo"), "a repo id (or give `url` for a plain download)", missing=True)
    return _parse_hub_source(table)


def _parse_sources(top: TomlTable) -> tuple[Source, ...]:
    top.seen.add("source")
    raw = top.data.get("source")
    if raw is None:
        raise top.error("source", "a [source] table or [[source]] array", missing=True)
    if isinstance(raw, list):
        if not raw:
            raise top.error("source", "a non-empty [[source]] array", raw)
        sources = tuple(_parse_source(top.file, f"source[{i}]", item) for i, item in enumerate(raw))
    else:
        sources = (_parse_source(top.file, "source", raw),)
    return sources


def _fetched_name_matches(name: str, sources: tuple[Source, ...]) -> bool:
    for source in sources:
        if isinstance(source, UrlSource) and source.filename == name:
            return True
        if isinstance(source, HubSource) and any(fnmatch.fnmatchcase(name, p) for p in source.files):
            return True
    return False


def _parse_build(top: TomlTable, sources: tuple[Source, ...]) -> BuildSpec:
    table = top.sub("build")
    kind = table.choice("kind", BUILD_KINDS)
    if kind == "passthrough":
        files = table.string_map("files")
        for role, name in files.items():
            if not _fetched_name_matches(name, sources):
                raise table.error(table.key(f"files.{role}"), "a file name the sources fetch", name)
        table.done()
        return BuildSpec(kind=kind, files=files)
    if kind == "convert":
        outtype = table.choice("outtype", CONVERT_OUTTYPES)
        quantize = table.choice("quantize", QUANTIZE_TYPES, None)
        table.done()
        return BuildSpec(kind=kind, outtype=outtype, quantize=quantize)
    dtype = table.choice("dtype", TRIM_DTYPES)
    table.done()
    return BuildSpec(kind=kind, dtype=dtype)


def _parse_target(top: TomlTable, build: BuildSpec) -> TargetSpec:
    table = top.sub("target")
    kind = table.get("kind", "a canister kind: " + ", ".join(known_kinds()), _is_known_kind)
    profile = load_profile(kind)
    files = table.string_map("files")
    if build.files is not None and set(build.files) != set(files):
        raise table.error(
            table.key("files"),
            "the same roles as build.files (" + ", ".join(sorted(build.files)) + ")",
            files,
        )
    roles = [role.name for role in profile.roles]
    for role, remote in files.items():
        if role not in roles:
            raise table.error(table.key(f"files.{role}"), f"a file role of {kind}: {', '.join(roles)}", role)
        problem = remote_name_problem(remote)
        if problem is not None:
            raise table.error(
                table.key(f"files.{role}"), f"a file name a canister can hold ({problem})", remote
            )
    load_args = table.get("load_args", "a list of strings", _is_string_list_or_empty, [])
    max_update = table.positive_int("max_tokens_update", None)
    max_query = table.positive_int("max_tokens_query", None)
    smoke_table = table.sub("smoke")
    smoke = SmokeSpec(
        prompt=smoke_table.string("prompt"),
        max_tokens=smoke_table.positive_int("max_tokens"),
        expect=smoke_table.get("expect", "a valid regular expression", _is_regex),
    )
    smoke_table.done()
    table.done()
    return TargetSpec(
        kind=kind,
        files=files,
        load_args=tuple(load_args),
        max_tokens_update=max_update,
        max_tokens_query=max_query,
        smoke=smoke,
    )


def _is_known_kind(value: Any) -> bool:
    # A name, never a path: a recipe cannot point prep at a folder outside the canister kinds.
    return isinstance(value, str) and is_kind_name(value) and value in known_kinds()


def _is_string_list_or_empty(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_regex(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        re.compile(value)
    except re.error:
        return False
    return True


def parse_recipe(path: Path, data: dict[str, Any]) -> Recipe:
    """Validates parsed TOML `data` read from `path` into a Recipe."""
    top = TomlTable(path, "", data, RECIPE_HINT)
    name = top.get(
        "name",
        f"the file's name ({path.stem!r})",
        lambda v: v == path.stem,
        path.stem,
    )
    if not is_recipe_name(name):
        raise UsageError(
            f"{path}: recipe name {name!r} must be lowercase letters, digits, '.', '_' or '-'",
            hint=RECIPE_HINT,
        )
    description = top.string("description")
    licence = top.string("licence")
    sources = _parse_sources(top)
    build = _parse_build(top, sources)
    target = _parse_target(top, build)
    top.done()
    return Recipe(
        name=name,
        description=description,
        licence=licence,
        sources=sources,
        build=build,
        target=target,
        path=path,
    )


def shipped_recipes_dir() -> Path:
    """The example recipes that come with prep (package data), which `prep recipes copy NAME` copies."""
    return (Path(__file__).resolve().parent / "example_recipes").resolve()


def is_recipe_name(text: str) -> bool:
    return bool(_NAME_RE.match(text))


def default_recipes_dir() -> Path:
    """`./recipes`. Outside a project there is none: prep says so rather than reading (and writing locks
    into) the folder it is installed in."""
    local = Path.cwd() / RECIPES_FOLDER
    if not local.is_dir():
        raise UsageError(
            f"no recipes here: prep looks for recipes in ./{RECIPES_FOLDER} ({local}) or in --recipes-dir",
            hint=f"`prep recipes` lists the examples shipped with prep; `prep recipes copy NAME` copies one "
            f"into ./{RECIPES_FOLDER}",
        )
    return local


def recipes_dir_given(recipes_dir: Path | None) -> Path:
    """`recipes_dir` (which must exist) or the default."""
    if recipes_dir is None:
        return default_recipes_dir()
    if not recipes_dir.is_dir():
        raise UsageError(
            f"--recipes-dir {recipes_dir} is not a folder", hint="give the folder that holds NAME.toml"
        )
    return recipes_dir


def _recipe_path(name_or_path: str | Path, recipes_dir: Path | None) -> Path:
    text = str(name_or_path)
    if text.endswith(RECIPE_SUFFIX) or "/" in text or isinstance(name_or_path, Path):
        path = Path(name_or_path)
        if not path.is_file():
            raise UsageError(
                f"recipe file not found: {path}",
                hint="a recipe NAME (from ./recipes) or the path of a NAME.toml; prep recipes lists them",
            )
        return path
    directory = recipes_dir_given(recipes_dir)
    path = directory / f"{text}{RECIPE_SUFFIX}"
    if not path.is_file():
        known = ", ".join(r.stem for r in sorted(directory.glob(f"*{RECIPE_SUFFIX}"))) or "none"
        raise UsageError(f"no recipe named {text!r} in {directory}", hint=f"known recipes: {known}")
    return path


def load_recipe(name_or_path: str | Path, recipes_dir: Path | None = None) -> Recipe:
    """Loads a recipe by name (from `recipes_dir` or the default) or from a .toml path."""
    path = _recipe_path(name_or_path, recipes_dir)
    return parse_recipe(path, _read_toml(path))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: not valid TOML: {err}", hint=RECIPE_HINT) from err
    except OSError as err:
        raise UsageError(
            f"cannot read recipe {path}: {err.strerror}", hint="check the path and its permissions"
        ) from err


def list_recipes(recipes_dir: Path | None = None) -> list[Recipe]:
    directory = recipes_dir_given(recipes_dir)
    return [load_recipe(p) for p in sorted(directory.glob(f"*{RECIPE_SUFFIX}"))]


def copy_shipped_recipe(name: str, project_dir: Path, *, force: bool = False) -> list[Path]:
    """Copies the shipped example `name` (its .toml and, when there is one, its lock) into
    `project_dir`/recipes; an existing different file is kept unless `force`. Returns the files written."""
    shipped = shipped_recipes_dir()
    source = shipped / f"{name}{RECIPE_SUFFIX}"
    if not is_recipe_name(name) or not source.is_file():
        known = ", ".join(r.stem for r in sorted(shipped.glob(f"*{RECIPE_SUFFIX}"))) or "none"
        raise UsageError(f"no example recipe named {name!r}", hint=f"examples shipped with prep: {known}")
    parse_recipe(source, _read_toml(source))  # an example that does not load here is not worth copying
    wanted = [source] + [p for p in (shipped / f"{name}{LOCK_SUFFIX}",) if p.is_file()]
    folder = project_dir / RECIPES_FOLDER
    for path in wanted:
        dest = folder / path.name
        if dest.exists() and not force and dest.read_bytes() != path.read_bytes():
            raise UsageError(f"{dest} exists and differs from the example", hint="pass --force to replace it")
    written = []
    for path in wanted:
        write_atomic(folder / path.name, path.read_bytes())
        written.append(folder / path.name)
    return written
