"""Trimming checkpoints down to what a target canister's loader reads."""

from pipeline.trim.gpt2 import TrimResult, read_gpt2_config, trim_gpt2

__all__ = ["TrimResult", "read_gpt2_config", "trim_gpt2"]
