"""A numpy GPT-2 forward pass over a safetensors checkpoint, as the candle canister computes it.

Weights are read as float32 whatever the stored dtype (like the canister's loader), names with or
without the `transformer.` prefix. Used to prove that a trimmed file computes what the original does and
to smoke-test a GPT-2 build locally.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from pipeline.formats.config_json import PREFIX, Gpt2Config

_GELU_C = np.float32(np.sqrt(2.0 / np.pi))


@dataclass
class KvCache:
    keys: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.keys[0].shape[1] if self.keys else 0


class Gpt2Numpy:
    def __init__(self, weights_path: Path, config: Gpt2Config) -> None:
        raw = load_file(str(weights_path))
        self.config = config
        self.weights = {
            (name if name.startswith(PREFIX) else PREFIX + name): values.astype(np.float32)
            for name, values in raw.items()
        }

    def _w(self, name: str) -> np.ndarray:
        return self.weights[PREFIX + name]

    def _layer_norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        normed = (x - mean) / np.sqrt(var + np.float32(self.config.layer_norm_epsilon))
        return normed * self._w(f"{name}.weight") + self._w(f"{name}.bias")

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self._w(f"{name}.weight") + self._w(f"{name}.bias")

    def forward(self, ids: list[int], cache: KvCache | None = None) -> np.ndarray:
        """Logits (len(ids), vocab) for `ids` following whatever `cache` already holds (updated in place)."""
        cache = cache if cache is not None else KvCache()
        start = cache.length
        n_head, n_embd = self.config.n_head, self.config.n_embd
        head_dim = n_embd // n_head
        positions = np.arange(start, start + len(ids))
        x = self._w("wte.weight")[ids] + self._w("wpe.weight")[positions]
        for layer in range(self.config.n_layer):
            p = f"h.{layer}."
            qkv = self._linear(self._layer_norm(x, p + "ln_1"), p + "attn.c_attn")
            q, k, v = (
                part.reshape(len(ids), n_head, head_dim).transpose(1, 0, 2)
                for part in np.split(qkv, 3, axis=-1)
            )
            if layer < len(cache.keys):
                k = np.concatenate([cache.keys[layer], k], axis=1)
                v = np.concatenate([cache.values[layer], v], axis=1)
                cache.keys[layer], cache.values[layer] = k, v
            else:
                cache.keys.append(k)
                cache.values.append(v)
            scores = q @ k.transpose(0, 2, 1) / np.float32(np.sqrt(head_dim))
            total = start + len(ids)
            mask = np.arange(total)[None, :] > positions[:, None]
            scores = np.where(mask[None], np.float32(-1e30), scores)
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            attn = (scores / scores.sum(axis=-1, keepdims=True)) @ v
            attn = attn.transpose(1, 0, 2).reshape(len(ids), n_embd)
            x = x + self._linear(attn, p + "attn.c_proj")
            hidden = self._linear(self._layer_norm(x, p + "ln_2"), p + "mlp.c_fc")
            hidden = 0.5 * hidden * (1 + np.tanh(_GELU_C * (hidden + np.float32(0.044715) * hidden**3)))
            x = x + self._linear(hidden, p + "mlp.c_proj")
        return self._layer_norm(x, "ln_f") @ self._w("wte.weight").T

    def generate(self, ids: list[int], max_tokens: int, stop_id: int | None = None) -> list[int]:
        """Greedy continuation of `ids`, at most `max_tokens` tokens, stopping at `stop_id`."""
        cache = KvCache()
        logits = self.forward(ids, cache)
        out: list[int] = []
        while len(out) < max_tokens and cache.length < self.config.n_positions:
            token = int(np.argmax(logits[-1]))
            if token == stop_id:
                break
            out.append(token)
            logits = self.forward([token], cache)
        return out
