"""A GPT-2 `config.json` as the candle GPT-2 canister reads it (FACTS.md §1c).

Its loader reads vocab_size, n_positions, n_embd, n_layer, n_head and layer_norm_epsilon, and needs
n_inner (when set) to be 4 * n_embd; anything else makes `setup_model` fail after the upload.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PrepError

INT_FIELDS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
MAX_CONFIG_BYTES = 1_000_000


@dataclass(frozen=True)
class Gpt2ConfigInfo:
    path: Path
    vocab_size: int
    n_positions: int
    n_embd: int
    n_layer: int
    n_head: int
    layer_norm_epsilon: float
    file_size: int


def read_gpt2_config(path: Path) -> Gpt2ConfigInfo:
    path = Path(path)
    data = path.read_bytes()
    if len(data) > MAX_CONFIG_BYTES:
        raise PrepError(f"{path}: {len(data):,} bytes is too large for a config.json")
    try:
        config = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PrepError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise PrepError(f"{path}: a config.json is a JSON object, this is a {type(config).__name__}")
    values = {}
    for name in INT_FIELDS:
        value = config.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise PrepError(f"{path}: {name} must be a positive integer, found {value!r}")
        values[name] = value
    epsilon = config.get("layer_norm_epsilon")
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or epsilon <= 0:
        raise PrepError(f"{path}: layer_norm_epsilon must be a positive number, found {epsilon!r}")
    if values["n_embd"] % values["n_head"]:
        raise PrepError(f"{path}: n_head {values['n_head']} does not divide n_embd {values['n_embd']}")
    n_inner = config.get("n_inner")
    if n_inner is not None and n_inner != 4 * values["n_embd"]:
        raise PrepError(
            f"{path}: n_inner {n_inner} is not 4 * n_embd ({4 * values['n_embd']}), which the canister needs"
        )
    return Gpt2ConfigInfo(path, **values, layer_norm_epsilon=float(epsilon), file_size=len(data))
