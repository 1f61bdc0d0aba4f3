"""Recipe schema: shipped recipes load; every malformed key or value is named in the error."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import PrepError
from pipeline.recipes import HubSource, UrlSource, list_recipes, load_recipe

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


def test_target_kind_checked_against_canisters_folder(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    (tmp_path / "canisters" / "gpt2").mkdir(parents=True)
    with pytest.raises(PrepError, match=r"`target.kind` must be a canister kind .* canisters/: gpt2"):
        load_recipe(path)
    (tmp_path / "canisters" / "llama_cpp").mkdir()
    assert load_recipe(path).target.kind == "llama_cpp"


def test_unknown_recipe_name_lists_known(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    with pytest.raises(PrepError, match="no recipe named 'nope'") as err:
        load_recipe("nope", tmp_path / "recipes")
    assert "tiny" in str(err.value)


def test_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(PrepError, match="not valid TOML"):
        load_recipe(write(tmp_path, "description = "))
