"""Every shipped recipe, pointed at tiny stand-ins served by HubSim, fetches and verifies end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from pipeline.hub import fetch_recipe
from pipeline.recipes import list_recipes
from tests.hubsim.world import TinyWorld, dump_toml

PROJECT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_every_shipped_recipe_fetches_from_the_tiny_world(tiny_world: TinyWorld) -> None:
    shipped = {r.name: r for r in list_recipes(PROJECT / "recipes")}
    tiny = {r.name: r for r in list_recipes(tiny_world.recipes_dir)}
    assert tiny.keys() == shipped.keys()
    for name, recipe in tiny.items():
        assert recipe.build == shipped[name].build
        assert recipe.target == shipped[name].target
        result = fetch_recipe(recipe, progress=False)
        assert recipe.lock_path.exists()
        for fetched_name in (recipe.build.files or {}).values():
            assert fetched_name in result.files
        assert all(f.path.stat().st_size == f.size for f in result.files.values())
    smol = fetch_recipe(tiny["smollm2-135m"], progress=False)
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(smol.files)


def test_dump_toml_round_trips_recipes() -> None:
    for path in sorted((PROJECT / "recipes").glob("*.toml")):
        data = tomllib.loads(path.read_text())
        assert tomllib.loads(dump_toml(data)) == data
