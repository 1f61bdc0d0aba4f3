"""One class per Hugging Face architecture, in a registry; each overrides only what differs.

The anchor is llama.cpp's convert_hf_to_gguf.py with the transformers version that `make install` puts
in .venv-reference (tests/reference-requirements.txt): hyperparameters are read the way that converter
sees them through AutoConfig
(e.g. Llama always has a head_dim, rope settings arrive as `rope_parameters`).

A new architecture is one class: a subclass that names its `hf_names` registers itself in ARCHITECTURES.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import gguf
import numpy as np

from pipeline.convert.checkpoint import load_json
from pipeline.convert.vocab import read_bpe_vocab, write_bpe_vocab
from pipeline.errors import InvalidFile

# llama.cpp drops these buffers everywhere; GPT-2's attn.bias / attn.masked_bias are its causal-mask buffers.
SKIPPED_SUFFIXES: tuple[str, ...] = (".attention.masked_bias", ".attention.bias", ".rotary_emb.inv_freq")

# The `architectures` names of config.json -> the class that converts them; filled by the classes below.
ARCHITECTURES: dict[str, type[HfArchitecture]] = {}


class HfArchitecture:
    """How one HF architecture becomes GGUF: tensor names, tensor transforms, hyperparameters, vocabulary."""

    hf_names: ClassVar[tuple[str, ...]]
    gguf_arch: ClassVar[gguf.MODEL_ARCH]
    skipped_suffixes: ClassVar[tuple[str, ...]] = SKIPPED_SUFFIXES

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls.__dict__.get("hf_names", ()):  # only classes that name their own architectures
            ARCHITECTURES[name] = cls

    def __init__(self, hf_name: str, config: dict[str, Any], model_dir: Path) -> None:
        self.hf_name = hf_name
        self.config = config
        self.model_dir = model_dir
        self.block_count = int(self._param("num_hidden_layers", "n_layer", "n_layers", "num_layers"))
        self.tensor_map = gguf.get_tensor_name_map(self.gguf_arch, self.block_count)

    @property
    def arch_name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.gguf_arch]

    def _param(self, *keys: str, default: Any = None) -> Any:
        for key in keys:
            if self.config.get(key) is not None:
                return self.config[key]
        if default is not None:
            return default
        raise InvalidFile(f"{self.model_dir / 'config.json'}: none of {', '.join(keys)} is set")

    def skip(self, hf_name: str) -> bool:
        return hf_name.endswith(self.skipped_suffixes)

    def gguf_name(self, hf_name: str) -> str:
        name = self.tensor_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise InvalidFile(f"{self.model_dir}: tensor {hf_name!r} has no GGUF name for {self.arch_name}")
        return name

    def rows(self, hf_name: str, data: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Rows start:stop of the tensor as GGUF stores it (numpy order), from the stored `data`."""
        return data[start:stop]

    def transformed_shape(self, hf_name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape

    def write_hparams(self, writer: gguf.GGUFWriter, file_type: gguf.LlamaFileType) -> None:
        raise NotImplementedError

    def write_vocab(self, writer: gguf.GGUFWriter) -> None:
        vocab_size = int(self._param("vocab_size"))
        write_bpe_vocab(writer, self.model_dir, read_bpe_vocab(self.model_dir, vocab_size))


class DecoderArchitecture(HfArchitecture):
    """Llama-style decoders: the generic hyperparameters of llama.cpp's TextModel."""

    def head_dim(self) -> int | None:
        return self.config.get("head_dim")

    def rope_parameters(self) -> dict[str, Any]:
        # transformers 5 folds rope_theta and rope_scaling into rope_parameters (rope_type "default" if none).
        params = dict(self.config.get("rope_parameters") or self.config.get("rope_scaling") or {})
        if "type" in params and "rope_type" not in params:
            params["rope_type"] = params["type"]
        params.setdefault("rope_type", "default")
        params.setdefault("rope_theta", self.config.get("rope_theta", 10000.0))
        return params

    def write_hparams(self, writer: gguf.GGUFWriter, file_type: gguf.LlamaFileType) -> None:
        n_head = int(self._param("num_attention_heads"))
        writer.add_block_count(self.block_count)
        writer.add_context_length(int(self._param("max_position_embeddings")))
        writer.add_embedding_length(int(self._param("hidden_size")))
        writer.add_feed_forward_length(int(self._param("intermediate_size")))
        writer.add_head_count(n_head)
        writer.add_head_count_kv(int(self._param("num_key_value_heads", default=n_head)))
        rope = self.rope_parameters()
        if rope["rope_type"] == "linear" and rope.get("factor") is not None:
            writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            writer.add_rope_scaling_factor(rope["factor"])
        elif rope["rope_type"] != "default":
            raise InvalidFile(
                f"{self.model_dir / 'config.json'}: rope scaling {rope['rope_type']!r} is not converted",
                hint="supported: none (default) and linear",
            )
        writer.add_rope_freq_base(rope["rope_theta"])
        writer.add_layer_norm_rms_eps(self._param("rms_norm_eps"))
        if (head_dim := self.head_dim()) is not None:
            writer.add_key_length(head_dim)
            writer.add_value_length(head_dim)
        writer.add_file_type(file_type)


class Qwen2(DecoderArchitecture):
    hf_names = ("Qwen2ForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.QWEN2


class Llama(DecoderArchitecture):
    hf_names = ("LlamaForCausalLM", "LLaMAForCausalLM")
    gguf_arch = gguf.MODEL_ARCH.LLAMA
    # llama.cpp sets add_bos_token false for 49152-token vocabularies (SmolLM, granite small).
    no_bos_vocab_size = 49152

    def head_dim(self) -> int:
        # transformers' LlamaConfig always has head_dim, so llama.cpp always writes key/value lengths.
        return int(self._param("head_dim", default=self.n_embd // self.n_head))

    @property
    def n_embd(self) -> int:
        return int(self._param("hidden_size"))

    @property
    def n_head(self) -> int:
        return int(self._param("num_attention_heads"))

    def write_hparams(self, writer: gguf.GGUFWriter, file_type: gguf.LlamaFileType) -> None:
        super().write_hparams(writer, file_type)
        writer.add_vocab_size(int(self._param("vocab_size")))
        writer.add_rope_dimension_count(self.head_dim())

    def rows(self, hf_name: str, data: np.ndarray, start: int, stop: int) -> np.ndarray:
        # HF stores q/k rows in the rotate-half order; llama.cpp's rope wants interleaved pairs.
        if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            return data[_rope_row_order(data.shape[0], self.n_head)[start:stop]]
        if hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            n_kv_head = int(self._param("num_key_value_heads", default=self.n_head))
            return data[_rope_row_order(data.shape[0], n_kv_head)[start:stop]]
        return data[start:stop]

    def write_vocab(self, writer: gguf.GGUFWriter) -> None:
        tokenizer_config_path = self.model_dir / "tokenizer_config.json"
        if tokenizer_config_path.is_file():
            add_prefix_space = load_json(tokenizer_config_path).get("add_prefix_space")
            if add_prefix_space is not None:
                writer.add_add_space_prefix(add_prefix_space)
        super().write_vocab(writer)
        if self._param("vocab_size") == self.no_bos_vocab_size:
            writer.add_add_bos_token(False)


def _rope_row_order(n_rows: int, n_head: int) -> np.ndarray:
    """Source row of each output row: per head, (2, half) -> (half, 2), llama.cpp's q/k permutation."""
    if n_rows % (2 * n_head):
        raise InvalidFile(f"{n_rows} q/k rows do not split into {n_head} heads of pairs")
    return np.arange(n_rows).reshape(n_head, 2, n_rows // n_head // 2).swapaxes(1, 2).reshape(-1)


class Gpt2(HfArchitecture):
    hf_names = ("GPT2LMHeadModel",)
    gguf_arch = gguf.MODEL_ARCH.GPT2
    skipped_suffixes = (*SKIPPED_SUFFIXES, ".attn.bias", ".attn.masked_bias")
    # Conv1D stores (in, out); GGUF wants (out, in) like a Linear.
    conv1d_suffixes = (".c_attn.weight", ".c_proj.weight", ".c_fc.weight")

    def rows(self, hf_name: str, data: np.ndarray, start: int, stop: int) -> np.ndarray:
        return data[:, start:stop].T if hf_name.endswith(self.conv1d_suffixes) else data[start:stop]

    def transformed_shape(self, hf_name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape[::-1] if hf_name.endswith(self.conv1d_suffixes) else shape

    def write_hparams(self, writer: gguf.GGUFWriter, file_type: gguf.LlamaFileType) -> None:
        n_embd = int(self._param("n_embd"))
        writer.add_block_count(self.block_count)
        writer.add_context_length(int(self._param("n_ctx", "n_positions")))
        writer.add_embedding_length(n_embd)
        writer.add_feed_forward_length(4 * n_embd)
        writer.add_head_count(int(self._param("n_head")))
        writer.add_layer_norm_eps(self._param("layer_norm_epsilon"))
        writer.add_file_type(file_type)


def architecture_for(config: dict[str, Any], model_dir: Path) -> HfArchitecture:
    names = config.get("architectures") or []
    for name in names:
        if name in ARCHITECTURES:
            return ARCHITECTURES[name](name, config, model_dir)
    raise InvalidFile(
        f"{model_dir / 'config.json'}: architecture {', '.join(names) or '(none)'} is not supported",
        hint=f"supported: {', '.join(sorted(ARCHITECTURES))}",
    )
