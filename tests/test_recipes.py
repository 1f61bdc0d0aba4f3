"""Recipe schema: shipped recipes load; every malformed key or value is named in the error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.errors import PrepError, UsageError
from pipeline.recipes import (
    HubSource,
    UrlSource,
    copy_shipped_recipe,
    list_recipes,
    load_recipe,
    shipped_recipes_dir,
)
from pipeline.targets.profile import canisters_dir

PROJECT = Path(__file__).resolve().parent.parent

MINIMAL = """
description = "tiny"
licence = "MIT"

[source]
repo = "acme/tiny"
files = ["model.gguf"]

[build]
kind = "passthrough"
files = { model = "model.gguf" }

[target]
kind = "llama_cpp"
files = { model = "models/model.gguf" }
load_args = ["--model", "models/model.gguf"]

[target.smoke]
prompt = "hi"
max_tokens = 5
expect = "."
"""


def write(tmp_path: Path, text: str, name: str = "tiny") -> Path:
    recipes = tmp_path / "recipes"
    recipes.mkdir(exist_ok=True)
    path = recipes / f"{name}.toml"
    path.write_text(text)
    return path


def test_shipped_recipes_load() -> None:
    recipes = {r.name: r for r in list_recipes(PROJECT / "recipes")}
    assert set(recipes) >= {"qwen2.5-0.5b", "qwen3-0.6b", "smollm2-135m", "gpt2-open-instruct", "stories15m"}
    qwen = recipes["qwen2.5-0.5b"]
    source = qwen.sources[0]
    assert isinstance(source, HubSource)
    assert source.sha256["qwen2.5-0.5b-instruct-q8_0.gguf"].startswith("ca59ca7f")
    assert qwen.known_size == 675_710_816
    assert qwen.target.load_args == ("--model", "models/model.gguf")
    stories = recipes["stories15m"]
    assert [type(s) for s in stories.sources] == [HubSource, UrlSource]
    assert stories.build.files == {"model": "stories15M.bin", "tokenizer": "tokenizer.bin"}
    assert recipes["smollm2-135m"].build.quantize == "q8_0"
    assert recipes["gpt2-open-instruct"].build.dtype == "f16"


def test_load_by_name_and_path(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    by_name = load_recipe("tiny", tmp_path / "recipes")
    by_path = load_recipe(str(path))
    assert by_name == by_path
    assert by_name.sources[0].revision == "main"
    assert by_name.lock_path == path.with_name("tiny.lock.json")


def test_load_by_name_from_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, MINIMAL)
    monkeypatch.chdir(tmp_path)
    assert load_recipe("tiny").path.resolve() == (tmp_path / "recipes" / "tiny.toml").resolve()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('licence = "MIT"', 'licence = "MIT"\nlicense = "x"', "unknown key `license`"),
        (
            'files = ["model.gguf"]',
            'files = ["model.gguf"]\nrevisoin = "v1"',
            "unknown key `source.revisoin`",
        ),
        ('repo = "acme/tiny"', 'repo = "not a repo"', "`source.repo` must be a repo id"),
        ('files = ["model.gguf"]', "files = []", "`source.files` must be a non-empty list"),
        (
            'kind = "passthrough"',
            'kind = "copy"',
            "`build.kind` must be one of passthrough, conv",
        ),
        (
            'model = "model.gguf" }',
            'model = "other.gguf" }',
            "`build.files.model` must be a file name",
        ),
        ("max_tokens = 5", "max_tokens = -1", "`target.smoke.max_tokens` must be a positive integer"),
        ("max_tokens = 5", 'max_tokens = "5"', "`target.smoke.max_tokens` must be a positive integer"),
        ('expect = "."', 'expect = "("', "`target.smoke.expect` must be a valid regular expression"),
        ('prompt = "hi"\n', "", "`target.smoke.prompt` must be a non-empty string; it is missing"),
        (
            'files = ["model.gguf"]',
            'files = ["model.gguf"]\nsha256 = { "model.gguf" = "abc" }',
            "`source.sha256.model.gguf` must be a sha256",
        ),
        (
            'files = { model = "models/model.gguf" }',
            'files = { weights = "models/model.gguf" }',
            "`target.files` must be the same roles as build.files",
        ),
        ('description = "tiny"', 'name = "other"\ndescription = "tiny"', "`name` must be the file's name"),
    ],
)
def test_bad_recipe_names_file_key_and_expectation(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in MINIMAL
    path = write(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(PrepError) as err:
        load_recipe(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_url_source_requires_sha256(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        'repo = "acme/tiny"\nfiles = ["model.gguf"]', 'url = "https://example.org/model.gguf"'
    )
    path = write(tmp_path, text)
    with pytest.raises(PrepError, match=r"`source.sha256` must be a sha256.*URL sources must be pinned"):
        load_recipe(path)
    path.write_text(text.replace('model.gguf"\n', 'model.gguf"\nsha256 = "' + "a" * 64 + '"\n', 1))
    source = load_recipe(path).sources[0]
    assert isinstance(source, UrlSource)
    assert source.filename == "model.gguf"


def test_source_array(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        '[source]\nrepo = "acme/tiny"\nfiles = ["model.gguf"]',
        '[[source]]\nrepo = "acme/tiny"\nfiles = ["*.gguf"]\n\n'
        '[[source]]\nrepo = "acme/tok"\nfiles = ["t.json"]\nbad = 1',
    )
    with pytest.raises(PrepError, match=r"unknown key `source\[1\].bad`"):
        load_recipe(write(tmp_path, text))


def test_target_kind_is_a_known_kind_name_never_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, MINIMAL)
    kinds, shipped = tmp_path / "kinds", canisters_dir()
    shutil.copytree(shipped / "gpt2", kinds / "gpt2")
    monkeypatch.setenv("PREP_CANISTERS_DIR", str(kinds))
    with pytest.raises(UsageError, match=r"`target.kind` must be a canister kind: gpt2; got 'llama_cpp'"):
        load_recipe(path)
    shutil.copytree(shipped / "llama_cpp", kinds / "llama_cpp")
    assert load_recipe(path).target.kind == "llama_cpp"
    # A kind folder outside the kinds folder, even one that holds a profile, is not a kind name.
    shutil.copytree(kinds / "llama_cpp", tmp_path / "outside")
    path.write_text(MINIMAL.replace('kind = "llama_cpp"', 'kind = "../outside"'))
    with pytest.raises(
        UsageError, match=r"`target.kind` must be a canister kind: gpt2, llama_cpp; got '\.\./"
    ):
        load_recipe(path)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            '{ weights = "models/model.gguf" }',
            "`target.files.weights` must be a file role of llama_cpp: model",
        ),
        ('{ model = "" }', "`target.files.model` must be a non-empty string"),
        ('{ model = "/models/model.gguf" }', "(it is absolute; names in a canister are relative"),
        ('{ model = "models/../../x.gguf" }', "(it contains '..')"),
        ('{ model = "models/mödel\tx.gguf" }', "(use letters, digits, '.', '_' and '-'"),
        ('{ model = "models//model.gguf" }', "(use letters, digits"),
    ],
)
def test_target_files_name_known_roles_and_storable_names(tmp_path: Path, files: str, expected: str) -> None:
    text = MINIMAL.replace('files = { model = "model.gguf" }', 'files = { model = "model.gguf" }')
    text = text.replace('files = { model = "models/model.gguf" }', f"files = {files}")
    if "weights" in files:  # build.files must name the same roles, or that check speaks first
        text = text.replace('files = { model = "model.gguf" }', 'files = { weights = "model.gguf" }')
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as err:
        load_recipe(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_outside_a_project_recipes_are_not_read_from_the_install_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=r"no recipes here: prep looks for recipes in \./recipes") as err:
        load_recipe("stories15m")
    assert "prep recipes copy NAME" in str(err.value)
    with pytest.raises(UsageError, match="--recipes-dir .*missing is not a folder"):
        load_recipe("stories15m", tmp_path / "missing")
    assert not list(tmp_path.iterdir())


def test_copy_a_shipped_example_into_recipes(tmp_path: Path) -> None:
    assert shipped_recipes_dir() != tmp_path
    [copied] = copy_shipped_recipe("stories15m", tmp_path)
    assert copied == tmp_path / "recipes" / "stories15m.toml"
    assert copied.read_bytes() == (PROJECT / "recipes" / "stories15m.toml").read_bytes()
    assert (
        load_recipe("stories15m", tmp_path / "recipes").lock_path
        == tmp_path / "recipes" / "stories15m.lock.json"
    )
    assert copy_shipped_recipe("stories15m", tmp_path) == [copied]  # the same bytes again: fine
    copied.write_text(copied.read_text() + "# mine\n")
    with pytest.raises(UsageError, match="exists and differs from the example"):
        copy_shipped_recipe("stories15m", tmp_path)
    assert copied.read_text().endswith("# mine\n")
    copy_shipped_recipe("stories15m", tmp_path, force=True)
    assert copied.read_bytes() == (PROJECT / "recipes" / "stories15m.toml").read_bytes()
    with pytest.raises(UsageError, match="no example recipe named '../stories15m'"):
        copy_shipped_recipe("../stories15m", tmp_path)


def test_unknown_recipe_name_lists_known(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    with pytest.raises(PrepError, match="no recipe named 'nope'") as err:
        load_recipe("nope", tmp_path / "recipes")
    assert "tiny" in str(err.value)


def test_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(PrepError, match="not valid TOML"):
        load_recipe(write(tmp_path, "description = "))
