"""Hugging Face safetensors checkpoints -> GGUF, torch-free and tensor-identical to llama.cpp's converter."""

from pipeline.convert.architectures import ARCHITECTURES
from pipeline.convert.converter import OUTTYPES, ConvertReport, convert_model

__all__ = ["ARCHITECTURES", "OUTTYPES", "ConvertReport", "convert_model"]
