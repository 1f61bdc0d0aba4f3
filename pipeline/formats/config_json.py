"""A GPT-2 `config.json` as the candle GPT-2 canister reads it (FACTS.md §1c).

Its loader reads vocab_size, n_positions, n_embd, n_layer, n_head and layer_norm_epsilon under the
`transformer.` tensor prefix, and needs n_inner (when set) to be 4 * n_embd; anything else makes
`setup_model` fail after the upload. Trimming, the local smoke and upload validation all read it here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import InvalidFile

PREFIX = "transformer."
MAX_CONFIG_BYTES = 1_000_000


@dataclass(frozen=True)
class Gpt2Config:
    vocab_size: int
    n_positions: int
    n_embd: int
    n_layer: int
    n_head: int
    layer_norm_epsilon: float

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor the loader reads, with the shape it insists on (Conv1D weights are (in, out))."""
        e = self.n_embd
        shapes = {
            "wte.weight": (self.vocab_size, e),
            "wpe.weight": (self.n_positions, e),
            "ln_f.weight": (e,),
            "ln_f.bias": (e,),
        }
        for i in range(self.n_layer):
            p = f"h.{i}."
            shapes |= {
                p + "ln_1.weight": (e,),
                p + "ln_1.bias": (e,),
                p + "attn.c_attn.weight": (e, 3 * e),
                p + "attn.c_attn.bias": (3 * e,),
                p + "attn.c_proj.weight": (e, e),
                p + "attn.c_proj.bias": (e,),
                p + "ln_2.weight": (e,),
                p + "ln_2.bias": (e,),
                p + "mlp.c_fc.weight": (e, 4 * e),
                p + "mlp.c_fc.bias": (4 * e,),
                p + "mlp.c_proj.weight": (4 * e, e),
                p + "mlp.c_proj.bias": (e,),
            }
        return {PREFIX + name: shape for name, shape in shapes.items()}


def read_gpt2_config(path: Path) -> Gpt2Config:
    """Reads config.json and checks every field the loader reads, naming the field that is wrong."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if len(raw) > MAX_CONFIG_BYTES:
            raise InvalidFile(f"{path}: {len(raw):,} bytes is too large for a config.json")
        data: Any = json.loads(raw)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidFile(f"{path}: cannot read the GPT-2 config ({err})") from err
    if not isinstance(data, dict):
        raise InvalidFile(f"{path}: expected a JSON object")

    def positive_int(field: str) -> int:
        value = data.get(field)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InvalidFile(f"{path}: field {field!r} must be a positive integer, got {value!r}")
        return value

    config = Gpt2Config(
        vocab_size=positive_int("vocab_size"),
        n_positions=positive_int("n_positions"),
        n_embd=positive_int("n_embd"),
        n_layer=positive_int("n_layer"),
        n_head=positive_int("n_head"),
        layer_norm_epsilon=_positive_float(path, data, "layer_norm_epsilon"),
    )
    if config.n_embd % config.n_head:
        raise InvalidFile(
            f"{path}: field 'n_embd' ({config.n_embd}) must be a multiple of 'n_head' ({config.n_head})"
        )
    n_inner = data.get("n_inner")
    if n_inner is not None and n_inner != 4 * config.n_embd:
        raise InvalidFile(
            f"{path}: field 'n_inner' is {n_inner!r}; the GPT-2 canister needs null or 4*n_embd "
            f"({4 * config.n_embd})"
        )
    return config


def _positive_float(path: Path, data: dict[str, Any], field: str) -> float:
    value = data.get(field)
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise InvalidFile(f"{path}: field {field!r} must be a positive number, got {value!r}")
    return float(value)
