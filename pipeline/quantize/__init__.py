"""GGUF quantization: F16/BF16/Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 in numpy, K-quants through llama.cpp."""

from pipeline.quantize.native import QuantizeResult, quantize_gguf
from pipeline.quantize.plan import LLAMA_FILE_TYPES, NATIVE_FILE_TYPES

__all__ = ["LLAMA_FILE_TYPES", "NATIVE_FILE_TYPES", "QuantizeResult", "quantize_gguf"]
